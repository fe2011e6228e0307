"""Combining an extended model with its base (hebbian-mirror combine): the base classes scored exactly as the base
model scores them, the taught and new ones as the extended model does; shared leading layers run once; the
checkpoint round-trips through the CLI, the loader, the server's detector and ONNX; clear refusals."""

from __future__ import annotations

import copy

import pytest
import torch

from hebbian_mirror.classes import COCO_CLASSES
from hebbian_mirror.config import load_settings
from hebbian_mirror.darknet import DarknetNet, load_darknet_weights, read_cfg
from hebbian_mirror.darknet.combined import CombinedNet, combine, shared_layers
from hebbian_mirror.darknet.heads import head_convs, resize_heads
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.errors import ModelFormatError
from hebbian_mirror.export import export_onnx, verify_onnx
from hebbian_mirror.families import family
from hebbian_mirror.images import decode_image
from hebbian_mirror.meta import ModelMeta
from hebbian_mirror.models import checkpoint
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.network import Network

from ..conftest import DOG, KNIFE, WEIGHTS

NEW = ("pistol", "wallet")
DOG_ROW = COCO_CLASSES.index("dog")


def coco() -> Network:
    net = DarknetNet(read_cfg(WEIGHTS / "yolov4-tiny.cfg"))
    load_darknet_weights(net, WEIGHTS / "yolov4-tiny.weights")
    return Network("darknet", net.eval(), ModelMeta("yolov4-tiny", tuple(COCO_CLASSES), (416, 416)))


def extended(base: Network, drift: float) -> Network:
    """A stand-in for a fine-tuned extension: 2 classes appended (pistol strong wherever there is an object), the
    dog row 3 logits weaker, and every weight from the first head's input on moved by ``drift`` (0: the backbone
    and neck stay the base's); batch-norm statistics as the base's."""
    torch.manual_seed(0)
    tuned = resize_heads(base.module, 82, keep=80).eval()
    first_head = head_convs(tuned)[0]
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if drift or int(name.split(".")[1]) >= first_head:
                p.add_(torch.randn_like(p) * max(drift, 0.01) * (p.std() if p.numel() > 1 else 1))
        for i in head_convs(tuned):
            bias = tuned.layers[i].conv.bias
            for a in range(3):
                bias[a * 87 + 5 + DOG_ROW] -= 3.0
                bias[a * 87 + 5 + 80] += 8.0
    return Network("darknet", tuned, ModelMeta("tuned", (*COCO_CLASSES, *NEW), (416, 416)))


def scores(detector, image, conf: float = 0.1) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for d in detector.detect([image], [DetectOptions(conf=conf)])[0]:
        out.setdefault(d.label, []).append(round(d.score, 4))
    return out


def found(net: Network, image, conf: float = 0.1, shared: int | None = None) -> dict[str, list[float]]:
    detector = family("darknet").detector(net, device="cpu")
    if shared is not None:
        detector.net.shared = shared
    return scores(detector, image, conf)


@pytest.fixture(scope="module")
def base():
    return coco()


def test_base_classes_score_as_the_base_model_and_taught_ones_as_the_extension(base):
    dog = decode_image(DOG)
    tuned = extended(base, drift=0.05)
    base_found, tuned_found = found(base, dog), found(tuned, dog)
    assert base_found["dog"][0] > 0.85 and 0.1 < tuned_found["dog"][0] < 0.6  # the extension weakened the dog
    assert tuned_found["pistol"] and "pistol" not in base_found
    kept = found(combine(tuned, base), dog)
    assert {k: v for k, v in kept.items() if k not in NEW} == base_found  # every base class as the base scores it
    assert kept["pistol"] == tuned_found["pistol"]  # the new classes as the extension scores them
    taught = found(combine(tuned, base, ["Dog"]), dog)  # taught: scored by the extension, never by the base
    assert taught["dog"] == tuned_found["dog"]
    assert {k: v for k, v in taught.items() if k not in (*NEW, "dog")} == {
        k: v for k, v in base_found.items() if k != "dog"
    }


def test_identical_leading_layers_run_once_and_change_nothing(base):
    tuned = extended(base, drift=0.0)  # only the head convolutions differ: a backbone and neck frozen in training
    first_head = head_convs(tuned.module)[0]
    assert shared_layers(base.module, tuned.module) == first_head
    assert shared_layers(base.module, extended(base, drift=0.05).module) == 0
    both = combine(tuned, base, ["dog"])
    detector = family("darknet").detector(both, device="cpu")
    assert detector.net.shared == first_head  # found when the weights were compared, before folding
    photo = decode_image(KNIFE)
    assert found(both, photo, 0.05) == found(both, photo, 0.05, shared=0)  # continuing from shared outputs is exact


def test_the_combine_command_writes_a_checkpoint_that_serves_and_exports(cli, base, tiny, tmp_path):
    tuned = extended(base, drift=0.05)
    checkpoint.save(checkpoint.to_record(tuned), tmp_path / "tuned.pt")
    code, out, err = cli("combine", "tuned.pt", "--base", "yolov4-tiny", "--taught", "dog", "--out", "c/both.pt")
    assert code == 0, out + err
    assert "dog, pistol, wallet from tuned.pt; the other 79 classes from yolov4-tiny" in out
    assert "serve it: hebbian-mirror serve --model c/both.pt" in out.splitlines()
    record = checkpoint.read(tmp_path / "c" / "both.pt")
    assert record["combined"]["base"] == "yolov4-tiny" and record["combined"]["taught"] == [DOG_ROW]
    detector = load_detector(tmp_path / "c" / "both.pt", load_settings(device="cpu"))
    assert isinstance(detector.net, CombinedNet) and detector.class_names == [*COCO_CLASSES, *NEW]
    dog = decode_image(DOG)
    assert scores(detector, dog) == found(combine(tuned, base, ["dog"]), dog)
    onnx = export_onnx(detector, tmp_path / "both.onnx", dynamic_batch=False)
    assert verify_onnx(detector, onnx, [DOG, KNIFE]) < 0.05  # pixels: the doubled heads decode the same in onnxruntime

    # a combined model is not trained, interpolated or combined again; bad flags are clear
    code, out, err = cli("train", "--data", tiny, "--model", "c/both.pt", "--epochs", "1", "--no-track")
    assert code != 0 and "combined model" in out + err
    code, out, err = cli("combine", "c/both.pt", "--base", "yolov4-tiny", "--out", "again.pt")
    assert code != 0 and "already a combined model" in out + err, out + err
    code, out, err = cli("interpolate", "c/both.pt", "--base", "yolov4-tiny", "--alpha", "0.5", "--out", "i.pt")
    assert code != 0 and "already a combined model" in out + err, out + err
    code, out, err = cli("combine", "tuned.pt", "--base", "yolov4-tiny", "--taught", "pistol", "--out", "x.pt")
    assert code != 0 and "'pistol' is not one of yolov4-tiny's classes" in out + err, out + err
    shared4 = WEIGHTS / "weapons4-yolov4-tiny.pt"  # trained without --keep-classes: it replaced COCO's classes
    code, out, err = cli("combine", shared4, "--base", "yolov4-tiny", "--out", "y.pt")
    assert code != 0 and "does not extend yolov4-tiny" in out + err, out + err
    code, out, err = cli("combine", "tuned.pt", "--base", "yolov4-tiny", "--out", "z.onnx")
    assert code != 0 and "a .pt file" in out + err
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["tuned.pt"]  # nothing written by a refused command


def test_the_base_weights_stay_untouched_and_the_pair_runs_at_the_extensions_input_size(base):
    before = copy.deepcopy(base.module.state_dict())
    tuned = extended(base, drift=0.05)
    both = combine(tuned, base)
    family("darknet").detector(both, device="cpu")  # folds batch norms in a copy
    after = base.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    small = Network("darknet", tuned.module.with_input_size(320, 320), tuned.meta.with_(input_size=(320, 320)))
    pair = combine(small, base)  # trained with --img-size 320: the base runs at 320 too, with its own weights
    assert (pair.module.base.width, pair.module.base.height) == (320, 320) and base.module.width == 416
    assert found(pair, decode_image(DOG), 0.3).get("dog")
    with pytest.raises(ModelFormatError, match="not among the base model's 80"):
        CombinedNet(base.module, tuned.module, [81])
    with pytest.raises(ModelFormatError, match="same heads and input size"):
        CombinedNet(base.module, small.module, [])


def test_pack_keeps_the_fine_tuned_part_and_rebuilds_the_pair_from_the_cache(cli, base, tmp_path):
    """A packed combined model (what the product ships) is its extension in float16 and the base's name: about a
    quarter of the combined checkpoint, and it detects as the combined model does."""
    tuned = extended(base, drift=0.05)
    checkpoint.save(checkpoint.to_record(tuned), tmp_path / "tuned.pt")
    assert cli("combine", "tuned.pt", "--base", "yolov4-tiny", "--taught", "dog", "--out", "both.pt")[0] == 0
    code, out, err = cli("pack", "both.pt", "--out", "packed.pt")
    assert code == 0, out + err
    assert "packed.pt: " in out and "with yolov4-tiny from the weights cache" in out and "sha256 " in out
    record = checkpoint.read(tmp_path / "packed.pt")
    assert record["combine_with"] == {"base": "yolov4-tiny", "taught": ["dog"]} and "combined" not in record
    assert (tmp_path / "packed.pt").stat().st_size < 0.3 * (tmp_path / "both.pt").stat().st_size
    packed, both = (load_detector(tmp_path / n, load_settings(device="cpu")) for n in ("packed.pt", "both.pt"))
    assert isinstance(packed.net, CombinedNet) and packed.class_names == both.class_names
    dog = decode_image(DOG)
    (a,), (b,) = packed.detect([dog], DetectOptions(conf=0.1)), both.detect([dog], DetectOptions(conf=0.1))
    assert [d.label for d in a] == [d.label for d in b]
    assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) < 0.01  # float16 weights
    code, out, err = cli("pack", "tuned.pt", "--out", "plain.pt")  # not combined: packed whole, in float16
    assert code == 0 and "from the weights cache" not in out
    assert cli("pack", "both.pt", "--out", "x.onnx")[0] != 0
