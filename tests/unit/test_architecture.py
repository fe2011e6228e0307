"""The package's shape, checked from the source: layers only import downwards, no import cycles (lazy imports
inside functions included), training is imported only by the command line, modules stay small."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..conftest import REPO

SRC = REPO / "src" / "hebbian_mirror"
PACKAGE = "hebbian_mirror"

# Bottom to top; a module may import its own layer or lower ones (docs/architecture.md draws this).
LAYERS = [
    {"__init__", "errors", "classes", "meta", "runtime"},
    {"config", "images", "detection", "network", "plots", "supervisor", "boxes"},
    {"image_batches", "datasets", "families", "darknet", "torchvision", "onnx", "verify"},
    {"models", "experiments", "loadgen", "streams"},
    {"evaluation", "export", "serving"},
    {"train", "server", "ui"},
    {"cli", "__main__"},
]
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = SRC.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every hebbian_mirror module ``path`` imports, at the top or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == PACKAGE:
                target = node.module
            else:
                continue
            submodules = {f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")}
            found |= submodules  # `from . import engine` imports the module engine
            if len(submodules) < len(node.names):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {t for t in imports(path) if t in modules and t != name} for name, path in modules.items()}


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int:
    comp = component(module)
    return next(i for i, names in enumerate(LAYERS) if comp in names)


def test_every_module_has_a_layer():
    for module in graph():
        assert any(component(module) in names for names in LAYERS), f"{module}: add its package to LAYERS"


def upward(g: dict[str, set[str]]) -> list[str]:
    return [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, ts in g.items()
        for b in ts
        if layer(b) > layer(a)
    ]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for v in g:
        if v not in index:
            visit(v)
    return found


def test_imports_only_go_down():
    wrong = upward(graph())
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def test_the_checks_catch_a_bad_import():
    """A made-up import of the loader from the metadata module is both upward and a cycle."""
    g = graph()
    g["hebbian_mirror.meta"] = g["hebbian_mirror.meta"] | {"hebbian_mirror.models.loader"}
    assert upward(g) == ["hebbian_mirror.meta (layer 0) imports hebbian_mirror.models.loader (layer 3)"]
    assert any("hebbian_mirror.meta" in c and "hebbian_mirror.models.loader" in c for c in cycles(g))


def test_training_is_imported_only_by_training_and_the_command_line():
    offenders = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        for b in targets
        if component(b) == "train" and component(a) not in ("train", "cli")
    ]
    assert not offenders, offenders


def test_modules_are_small():
    big = {module_name(p): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"over {MAX_LINES} lines: {big}"


def test_capabilities_not_names_say_what_a_model_can_do():
    """Outside a family's own package, code asks the family's declared capabilities; it never compares its name."""
    names = "darknet|torchvision|onnx"
    compared = re.compile(rf"""(family|name)\W{{0,3}}(==|!=)\s*["']({names})["']""")
    offenders = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if (m := compared.search(line)) and component(module_name(path)) != m[3]
    ]
    assert not offenders, "\n".join(offenders)
    assert compared.search('if network.family != "darknet":') and compared.search("fam.name == 'onnx'")
