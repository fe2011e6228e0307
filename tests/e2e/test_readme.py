"""Every command block of the README and of the pages under docs/ runs as pasted, so the docs cannot rot.

Blocks run in a fixed order: README.md first, then the pages of ``DOC_PAGES`` in the order listed there (a block
may use what an earlier one made). Each runs as one bash script with ``set -e``, in a scratch folder laid out like a
fresh clone (``.venv`` of this checkout, ``../shared`` beside it) with a scratch home whose weights cache ``make
weights`` filled, as for a new user: no ``HEBBIAN_MIRROR_WEIGHTS`` (offline, as every test). A block preceded by
``<!-- readme-test: skip (why) -->`` is not run and must say why; ``<!-- readme-test: server (...) -->`` runs
against a real server the test starts, ``localhost:8000`` pointed at it. A page under docs/ with shell blocks must
be listed in ``DOC_PAGES``, every relative link of these pages must point to an existing file, and the README
stays short.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from ..conftest import REPO, SHARED
from ..server_process import ServerProcess

FENCE = re.compile(r"(?:<!-- readme-test: (\w+)(?: \(([^)]*)\))? -->\n)?```(sh|bash)\n(.*?)```", re.S)
# Any fence that looks like a shell block, so that one spelled in a way FENCE would miss cannot go unrun.
SHELLISH = re.compile(r"^[ \t]*```[ \t]*(?:sh|bash|shell|console|zsh|shell-session)\b", re.M)
# [text](target) and ![alt](target), with an optional "title"; code spans and fenced blocks are removed first.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
README_MAX_LINES = 200

# The pages under docs/ whose shell blocks run, in this order, after the README's.
DOC_PAGES = [
    "docs/training.md",  # the command line; a short fine-tune whose runs/handheld/best.pt the same block exports
    "docs/cameras.md",  # the stream routes, on the runs/clips/pos-02.mp4 that the README's first camera made
    "docs/weapons.md",
    "docs/experiments/weapons.md",
    "docs/deploy.md",
]
PAGES = ["README.md", *DOC_PAGES]


def docs_pages() -> list[str]:
    """Every markdown page under docs/ (subfolders included), relative to the repository."""
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*.md"))


def page_blocks(page: str) -> list[tuple[str, str, str]]:
    """(mode, reason, script) of every shell block of one page, in order."""
    return [(m[1] or "run", m[2] or "", m[4]) for m in FENCE.finditer((REPO / page).read_text())]


def blocks() -> list[tuple[str, str, str, str]]:
    """(page, mode, reason, script) of every shell block of the README and the listed docs pages, in run order."""
    found = [(page, *block) for page in PAGES for block in page_blocks(page)]
    assert len(found) >= 5, "the command blocks of the README and docs/ were not found"
    return found


def test_every_block_that_is_not_run_says_why():
    for page, mode, reason, script in blocks():
        assert mode in ("run", "skip", "server"), f"{page}: {mode}"
        if mode == "skip":
            assert len(reason) > 10, f"a skipped block of {page} must say why:\n{script}"


def test_every_page_with_command_blocks_is_run():
    assert len(set(PAGES)) == len(PAGES), "a page is listed twice"
    missing = [page for page in DOC_PAGES if not (REPO / page).is_file()]
    assert not missing, f"DOC_PAGES lists pages that do not exist: {missing}"
    unlisted = [page for page in docs_pages() if page not in PAGES and page_blocks(page)]
    assert not unlisted, f"pages with shell blocks that this test does not run (add them to DOC_PAGES): {unlisted}"
    for page in ["README.md", *docs_pages()]:
        text = (REPO / page).read_text()
        assert len(SHELLISH.findall(text)) == len(FENCE.findall(text)), (
            f"{page}: a shell block this test would not see (fence it as ```sh or ```bash)"
        )


def test_readme_is_short():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move some to docs/"


def test_every_relative_link_points_to_a_file():
    broken = []
    for page in ["README.md", *docs_pages()]:
        path = REPO / page
        for target in LINK.findall(CODE.sub("", path.read_text())):
            # http(s):// and other schemes (mailto:) leave the repository; "#anchor" stays on the page
            if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
                continue
            if not (path.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page}: {target}")
    assert not broken, "relative links to files that do not exist:\n" + "\n".join(broken)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh-clone layout: repo/ (this checkout's .venv and Makefile) and shared/ beside it; a new home whose
    weights cache ``make weights`` linked; the environment a new user's shell would have."""
    root = tmp_path_factory.mktemp("readme")
    repo = root / "repo"
    repo.mkdir()
    for name in (".venv", "Makefile", "pyproject.toml"):
        (repo / name).symlink_to(REPO / name)
    (root / "shared").symlink_to(SHARED)
    env = {k: v for k, v in os.environ.items() if k != "HEBBIAN_MIRROR_WEIGHTS"} | {"HOME": str(root / "home")}
    subprocess.run(["make", "-s", "weights"], cwd=repo, env=env, check=True, capture_output=True, timeout=60)
    assert (root / "home" / ".cache" / "hebbian-mirror" / "weights" / "yolov4-tiny.weights").is_symlink()
    return repo, env


def test_readme_commands_run_as_pasted(clone, tmp_path):
    repo, env = clone
    runnable = [(page, mode, reason, script) for page, mode, reason, script in blocks() if mode != "skip"]
    assert any(mode == "server" for _, mode, _, _ in runnable)
    server = ServerProcess(log=tmp_path / "server.log")
    try:
        for page, mode, reason, script in runnable:
            own = None
            if mode == "server" and reason.startswith("hebbian-mirror serve "):  # a server of its own, as said
                own = ServerProcess(*shlex.split(reason)[2:], cwd=repo, log=tmp_path / "own-server.log")
            if mode == "server":
                script = script.replace("localhost:8000", f"127.0.0.1:{(own or server).port}")
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", script],
                cwd=repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if own is not None:
                assert own.stop(), own.log()
            assert done.returncode == 0, f"{page} block failed:\n{script}\n--- stdout\n{done.stdout}\n{done.stderr}"
    finally:
        assert server.stop(), server.log()
    assert (repo / "runs" / "handheld" / "best.pt").is_file() and (repo / "runs" / "handheld.onnx").is_file()
