"""Fine-tuning Darknet YOLO: head resizing, loss going down, exact resume, checkpoints that load everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hebbian_mirror.classes import COCO_CLASSES
from hebbian_mirror.config import load_settings
from hebbian_mirror.darknet import DarknetNet, load_darknet_weights, read_cfg
from hebbian_mirror.darknet.detector import DarknetDetector
from hebbian_mirror.darknet.heads import head_convs, resize_heads
from hebbian_mirror.darknet.loss import YoloLoss
from hebbian_mirror.darknet.training import YoloTrainSet, collate
from hebbian_mirror.datasets import load_splits
from hebbian_mirror.datasets.augment import AugmentConfig
from hebbian_mirror.errors import TrainingConfigError
from hebbian_mirror.images import decode_image
from hebbian_mirror.meta import ModelMeta
from hebbian_mirror.models import checkpoint
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.train.loop import TrainConfig, train

from ..conftest import WEIGHTS


def coco_net() -> DarknetNet:
    net = DarknetNet(read_cfg(WEIGHTS / "yolov4-tiny.cfg"))
    load_darknet_weights(net, WEIGHTS / "yolov4-tiny.weights")
    return net


def test_resized_heads_keep_every_other_weight():
    net = coco_net()
    new = resize_heads(net, 3)
    assert new.num_classes == 3 and [h.classes for h in new.heads] == [3, 3]
    old_state, new_state = net.state_dict(), new.state_dict()
    heads = {f"layers.{i}." for i in head_convs(net)}
    for key, value in new_state.items():
        if any(key.startswith(h) for h in heads):
            a = 3
            for k in range(a):  # box + objectness rows of every anchor kept
                assert torch.equal(value[k * 8 : k * 8 + 5], old_state[key][k * 85 : k * 85 + 5])
            assert value.shape[0] == a * 8
        else:
            assert torch.equal(value, old_state[key]), key


def test_an_extended_head_keeps_every_base_weight_and_its_classes_are_base_plus_new(tiny, tmp_path):
    from hebbian_mirror.train.loop import prepare

    cfg = TrainConfig(data=str(tiny), out=str(tmp_path / "x"), device="cpu", keep_classes=True)
    p = prepare(cfg, load_settings(device="cpu"))
    base = coco_net()
    assert list(p.network.meta.classes) == [*COCO_CLASSES, "airpods", "phone", "wallet"]  # 80 + the new ones
    assert p.train_ds.classes == list(p.network.meta.classes)  # labels point into the extended list
    assert {p.train_ds.classes[b.class_id] for s in p.train_ds.samples for b in s.boxes} <= {
        "airpods",
        "phone",
        "wallet",
    }
    assert p.val_ds.classes == ["airpods", "phone", "wallet"]  # evaluated on the dataset's own classes
    old, new = base.state_dict(), p.network.module.state_dict()
    heads = {f"layers.{i}." for i in head_convs(base)}
    for key, value in new.items():
        if any(key.startswith(h) for h in heads):
            for k in range(3):  # per anchor: box, objectness and the 80 COCO class rows kept, 3 rows appended
                assert torch.equal(value[k * 88 : k * 88 + 85], old[key][k * 85 : (k + 1) * 85]), key
        else:
            assert torch.equal(value, old[key]), key
    with pytest.raises(Exception, match="cannot keep"):
        resize_heads(base, 3, keep=80)


def test_augmented_items_keep_boxes_inside(tiny):
    ds = load_splits(tiny)["train"]
    data = YoloTrainSet(ds, (320, 320), letterbox=False, augment=AugmentConfig(mosaic=1.0, rot90=0.5))
    torch.manual_seed(0)
    for i in range(6):
        image, target = data[i]
        assert image.shape == (3, 320, 320) and image.min() >= 0 and image.max() <= 1
        if len(target):
            assert (target[:, 1:] >= 0).all() and (target[:, [1, 3]] <= 320).all() and (target[:, [2, 4]] <= 320).all()
            assert ((target[:, 3] - target[:, 1]) > 0).all() and set(target[:, 0].long().tolist()) <= {0, 1, 2}
    plain = YoloTrainSet(ds, (320, 320), letterbox=False, augment=None)
    _, target = plain[0]
    sample = ds.samples[0]
    expected = torch.tensor(sample.boxes[0].xyxy) * torch.tensor([320 / sample.width, 320 / sample.height] * 2)
    assert torch.allclose(target[0, 1:], expected, atol=1e-3)


def test_a_few_steps_lower_the_loss(tiny):
    torch.manual_seed(0)
    net = resize_heads(coco_net(), 3)
    net.train()
    data = YoloTrainSet(load_splits(tiny)["train"], (224, 224), letterbox=False, augment=None)
    images, targets = collate([data[i] for i in range(8)])
    loss_fn = YoloLoss(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.005, momentum=0.9)
    losses = []
    for _ in range(8):
        loss, parts = loss_fn(net(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert parts["positives"] > 0
    assert losses[-1] < 0.7 * losses[0], losses


def config(tiny, out, **kw) -> TrainConfig:
    options = {"epochs": 2, "batch": 4, "img_size": 160, "device": "cpu", "loader_workers": 0, "max_steps": 2}
    return TrainConfig(data=str(tiny), out=str(out), eval_batch=4, **(options | kw))


class Stop(Exception):
    pass


def test_resume_equals_uninterrupted_run(tiny, tmp_path):
    settings = load_settings(device="cpu")
    straight = train(config(tiny, tmp_path / "straight"), settings)
    assert straight["epochs_run"] == 2

    def interrupt(epoch, metrics):
        raise Stop

    with pytest.raises(Stop):
        train(config(tiny, tmp_path / "resumed"), settings, on_epoch=interrupt)
    assert checkpoint.read(tmp_path / "resumed" / "last.pt")["epoch"] == 0
    resumed = train(config(tiny, tmp_path / "resumed"), settings, resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    a = checkpoint.read(tmp_path / "straight" / "last.pt")["state_dict"]
    b = checkpoint.read(tmp_path / "resumed" / "last.pt")["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["history"][-1]["AP"] == straight["history"][-1]["AP"]


def test_checkpoint_is_a_self_contained_model(tiny, tmp_path):
    summary = train(config(tiny, tmp_path / "run", epochs=1), load_settings(device="cpu"))
    best = tmp_path / "run" / "best.pt"
    record = checkpoint.read(best)
    assert record["class_names"] == ["airpods", "phone", "wallet"] and record["input_size"] == [160, 160]
    in_memory = DarknetDetector.from_net(checkpoint.from_record(record).module, ModelMeta.from_dict(record), "cpu")
    loaded = load_detector(str(best), load_settings(device="cpu"))
    image = decode_image(load_splits(tiny)["val"].samples[0].image)
    from hebbian_mirror.detection import DetectOptions

    opts = DetectOptions(conf=1e-4, max_det=50)
    a, b = in_memory.detect([image], opts)[0], loaded.detect([image], opts)[0]
    assert a and [(d.label, d.box, d.score) for d in a] == [(d.label, d.box, d.score) for d in b]
    assert summary["best_ap"] >= 0


def test_train_cli_and_clear_errors(cli, tiny, tmp_path):
    code, stdout, stderr = cli(
        "train",
        "--data",
        tiny,
        "--epochs",
        "1",
        "--batch",
        "4",
        "--img-size",
        "160",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        tmp_path / "cli-run",
        "--no-augment",
    )
    assert code == 0, stderr
    assert (tmp_path / "cli-run" / "best.pt").is_file() and (tmp_path / "cli-run" / "summary.json").is_file()
    code, stdout, stderr = cli(
        "predict",
        load_splits(tiny)["val"].samples[0].image,
        "--model",
        tmp_path / "cli-run" / "best.pt",
        "--conf",
        "0.01",
        "--json",
    )
    assert code == 0 and '"detections"' in stdout, stderr
    empty = tmp_path / "empty"
    (empty / "images" / "train").mkdir(parents=True)
    (empty / "data.yaml").write_text("names: [a]\ntrain: images/train\nval: images/train\n")
    code, _, stderr = cli("train", "--data", empty, "--epochs", "1", "--out", tmp_path / "x")
    assert code == 1 and "no readable images" in stderr
    code, _, stderr = cli(
        "train",
        "--data",
        tiny,
        "--model",
        "fcos-resnet50-fpn",
        "--out",
        tmp_path / "y",
        "--weights-dir",
        tmp_path / "no-weights",
        "--offline",
    )
    assert code == 1 and "fcos_resnet50_fpn_coco" in stderr and "not in the weights cache" in stderr
    code, _, stderr = cli("train", "--data", tiny, "--model", "yolov9", "--out", tmp_path / "z")
    assert code == 1 and "unknown base model" in stderr
    with pytest.raises(TrainingConfigError, match="nothing to resume"):
        train(config(tiny, tmp_path / "never"), load_settings(device="cpu"), resume=True)


def test_torchvision_fine_tuning(tiny, tmp_path):
    """torchvision detectors fine-tune with their box classifier replaced. Their COCO checkpoints are not in
    ../shared, so the base is a checkpoint in the official format (random weights, official file name)."""
    import torchvision.models.detection as tvd

    from hebbian_mirror.models.registry import get_spec

    spec = get_spec("ssdlite320-mobilenet-v3-large")
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    official = tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    state = {k: v for k, v in official.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, weights / spec.files[0].name)
    settings = load_settings(weights_dir=weights, offline=True, device="cpu")
    cfg = config(tiny, tmp_path / "straight", model=spec.name, img_size=None)
    with pytest.raises(TrainingConfigError, match="--iou-objectness is for Darknet models"):
        train(config(tiny, tmp_path / "iou", model=spec.name, img_size=None, iou_objectness=True), settings)
    with pytest.raises(TrainingConfigError, match="--multi-scale is for Darknet models"):
        train(config(tiny, tmp_path / "ms", model=spec.name, img_size=None, multi_scale=0.25), settings)
    straight = train(cfg, settings)
    assert straight["epochs_run"] == 2 and all(np.isfinite(h["loss"]) for h in straight["history"])
    record = checkpoint.read(tmp_path / "straight" / "best.pt")
    assert record["builder"] == "ssdlite320_mobilenet_v3_large" and record["num_classes"] == 4
    detector = load_detector(str(tmp_path / "straight" / "best.pt"), load_settings(device="cpu"))
    assert detector.class_names == ["airpods", "phone", "wallet"] and detector.info()["family"] == "torchvision"
    image = decode_image(load_splits(tiny)["val"].samples[0].image)
    from hebbian_mirror.detection import DetectOptions

    dets = detector.detect([image], DetectOptions(conf=0.0, max_det=20))[0]
    assert dets and all(d.label in detector.class_names for d in dets)

    def interrupt(epoch, metrics):
        raise Stop

    with pytest.raises(Stop):
        train(config(tiny, tmp_path / "resumed", model=spec.name, img_size=None), settings, on_epoch=interrupt)
    train(config(tiny, tmp_path / "resumed", model=spec.name, img_size=None), settings, resume=True)
    a = checkpoint.read(tmp_path / "straight" / "last.pt")["state_dict"]
    b = checkpoint.read(tmp_path / "resumed" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_first_epochs_cached_images_channels_last_and_the_curve(tiny, tmp_path):
    from hebbian_mirror.darknet.heads import backbone_layers

    class Stop(Exception):
        pass

    def check_frozen(epoch, metrics):
        if epoch == 0:
            raise Stop

    fast = {"freeze_epochs": 1, "cache_images": True, "channels_last": True}
    cfg = config(tiny, tmp_path / "run", **fast)
    with pytest.raises(Stop):
        train(cfg, load_settings(device="cpu"), on_epoch=check_frozen)
    base = resize_heads(coco_net(), 3).state_dict()
    first = checkpoint.read(tmp_path / "run" / "last.pt")["state_dict"]
    backbone = [k for k in base if int(k.split(".")[1]) < backbone_layers(coco_net())]
    # frozen entirely: weights, and the batch-norm statistics too (what the base model's classes rely on)
    assert backbone and all(torch.equal(first[k], base[k]) for k in backbone if "num_batches" not in k)
    summary = train(cfg, load_settings(device="cpu"), resume=True)  # epoch 2: everything trains
    last = checkpoint.read(tmp_path / "run" / "last.pt")["state_dict"]
    assert any(not torch.equal(last[k], first[k]) for k in backbone if k.endswith("conv.weight"))
    minutes = [h["minutes"] for h in summary["history"]]
    assert len(minutes) == 2 and 0 < minutes[0] < minutes[1]
    assert (tmp_path / "run" / "ap-by-minutes.png").stat().st_size > 10_000


def test_class_balanced_sampling_draws_rare_classes_more_and_keeps_the_epoch_length(tiny, tmp_path, caplog):
    from hebbian_mirror.train.sampling import EpochSampler, repeat_factors

    found = [{0}] * 8 + [{0, 1}] + [set()]  # class 1 in 1 image of 10; one image with no box
    factors = repeat_factors(found, threshold=0.5)
    assert factors[:8] == [1.0] * 8 and factors[9] == 1.0 and factors[8] == pytest.approx(5**0.5)
    plain = EpochSampler(10, seed=3)
    assert sorted(plain) == list(range(10))  # no weights: a permutation, as before
    balanced = EpochSampler(10, seed=3, weights=factors)
    draws = []
    for epoch in range(400):
        balanced.set_epoch(epoch)
        order = list(balanced)
        assert len(order) == len(balanced) == 10
        draws += order
    expected = 10 * 5**0.5 / (9 + 5**0.5)  # the rare image's draws per epoch
    assert draws.count(8) / 400 == pytest.approx(expected, rel=0.05)
    halves = [EpochSampler(10, seed=3, rank=r, size=2, weights=factors) for r in (0, 1)]
    for s in [*halves, balanced]:
        s.set_epoch(7)
    assert sorted([*halves[0], *halves[1]]) == sorted(balanced)  # two processes share one epoch's draws

    with caplog.at_level("INFO", logger="hebbian_mirror.train.loop"):
        train(config(tiny, tmp_path / "run", epochs=1, max_steps=1, repeat_threshold=0.3), load_settings(device="cpu"))
    assert "class-balanced sampling (threshold 0.3)" in caplog.text


def test_a_slower_backbone_learning_rate_holds_through_the_schedule(tiny):
    from hebbian_mirror.families import family
    from hebbian_mirror.network import Network
    from hebbian_mirror.train import engine

    cfg = TrainConfig(data=str(tiny), lr=0.02, backbone_lr=0.1, warmup_epochs=0)
    net = resize_heads(coco_net(), 3)
    network = Network("darknet", net, ModelMeta("x", ("a", "b", "c"), (416, 416)))
    backbone = family("darknet").training().backbone(network)
    opt = engine.optimisation(cfg, net, steps_per_epoch=10, use_amp=False, backbone=backbone)
    slow = {id(p) for p in backbone}
    assert 0 < len(slow) < len(list(net.parameters()))
    for _ in range(3):
        opt.optimizer.step()  # no gradients: nothing moves, the schedule advances
        opt.scheduler.step()
    for group in opt.optimizer.param_groups:
        in_backbone = {id(p) in slow for p in group["params"]}
        assert len(in_backbone) == 1  # a group is all backbone or none of it
        peak = 0.02 * (0.1 if in_backbone.pop() else 1)
        assert group["lr"] == pytest.approx(peak * opt.scheduler.lr_lambdas[0](3))
    assert sum(len(g["params"]) for g in opt.optimizer.param_groups) == len(list(net.parameters()))
    plain = engine.optimisation(TrainConfig(data=str(tiny)), net, 10, False, backbone=backbone)
    assert len(plain.optimizer.param_groups) == 2  # as before: checkpoints of earlier runs resume


def test_resuming_with_another_backbone_rate_or_objectness_target_is_refused(tiny, tmp_path):
    cfg = config(tiny, tmp_path / "run", epochs=2, max_steps=1, backbone_lr=0.5, iou_objectness=True)
    with pytest.raises(Stop):
        train(cfg, load_settings(device="cpu"), on_epoch=lambda epoch, metrics: (_ for _ in ()).throw(Stop()))
    with pytest.raises(TrainingConfigError, match=r"trained with --backbone-lr 0\.5: resume it with the same"):
        train(config(tiny, tmp_path / "run", epochs=2, max_steps=1), load_settings(device="cpu"), resume=True)
    other = config(tiny, tmp_path / "run", epochs=2, max_steps=1, backbone_lr=0.5)
    with pytest.raises(TrainingConfigError, match=r"trained with --iou-objectness: resume it with the same"):
        train(other, load_settings(device="cpu"), resume=True)
    summary = train(cfg, load_settings(device="cpu"), resume=True)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]


def test_ema_weights_are_validated_saved_as_best_and_resumed_exactly(tiny, tmp_path, monkeypatch):
    """--ema: best.pt holds the average (not the last step's weights), last.pt both; a resumed run continues the
    same average as an uninterrupted one, and resuming without --ema is refused."""
    from hebbian_mirror.train import engine

    monkeypatch.setattr(engine.Ema, "RAMP", 1.0)  # the full decay from the first steps: the average lags
    settings = load_settings(device="cpu")
    one = train(config(tiny, tmp_path / "one", ema=0.9, max_steps=3, epochs=1, lr=0.02), settings)
    last, best = (checkpoint.read(tmp_path / "one" / name) for name in ("last.pt", "best.pt"))
    averaged, trained = last["ema"]["weights"], last["state_dict"]
    assert last["ema"]["updates"] == 3 and one["epochs_run"] == 1
    floats = [k for k in trained if trained[k].is_floating_point()]
    assert max(float((averaged[k] - trained[k]).abs().max()) for k in floats) > 1e-3  # not the last step's
    assert all(torch.equal(best["state_dict"][k], averaged[k]) for k in averaged)  # best.pt: the average
    straight = train(config(tiny, tmp_path / "straight", ema=0.99, max_steps=3, epochs=2), settings)
    averaged = checkpoint.read(tmp_path / "straight" / "last.pt")["ema"]["weights"]
    assert straight["epochs_run"] == 2

    def interrupt(epoch, metrics):
        raise Stop

    with pytest.raises(Stop):
        train(config(tiny, tmp_path / "resumed", ema=0.99, max_steps=3, epochs=2), settings, on_epoch=interrupt)
    with pytest.raises(TrainingConfigError, match=r"trained with --ema 0\.99: resume it with the same"):
        train(config(tiny, tmp_path / "resumed", max_steps=3, epochs=2), settings, resume=True)
    train(config(tiny, tmp_path / "resumed", ema=0.99, max_steps=3, epochs=2), settings, resume=True)
    again = checkpoint.read(tmp_path / "resumed" / "last.pt")["ema"]
    assert again["updates"] == 6
    for key, value in averaged.items():
        assert torch.allclose(again["weights"][key].float(), value.float(), atol=1e-6), key


def test_the_last_epochs_kept_and_averaged_with_batch_norm_measured_anew(cli, tiny, tmp_path):
    train(config(tiny, tmp_path / "run", epochs=3, keep_epochs=2, lr=0.02), load_settings(device="cpu"))
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("epoch-*.pt")) == ["epoch-2.pt", "epoch-3.pt"]  # the last 2 only
    code, out, err = cli(
        "average", run / "epoch-2.pt", run / "epoch-3.pt", "--data", tiny, "--out", tmp_path / "avg.pt", "--images", "8"
    )
    assert code == 0, out + err
    assert "2 checkpoints averaged, batch norm measured on 8 images" in out
    a, b, avg = (
        checkpoint.read(p)["state_dict"] for p in (run / "epoch-2.pt", run / "epoch-3.pt", tmp_path / "avg.pt")
    )
    weights = [k for k in avg if k.endswith("conv.weight")]
    assert all(torch.allclose(avg[k], (a[k] + b[k]) / 2, atol=1e-6) for k in weights)  # a uniform mean
    means = [k for k in avg if k.endswith("running_mean")]
    assert any(not torch.allclose(avg[k], (a[k] + b[k]) / 2, atol=1e-4) for k in means)  # measured, not averaged
    assert (
        tuple(load_detector(tmp_path / "avg.pt", load_settings(device="cpu")).class_names)
        == checkpoint.load(run / "epoch-3.pt").meta.classes
    )
    code, out, err = cli("average", run / "epoch-3.pt", WEIGHTS / "weapons4-yolov4-tiny.pt", "--data", tiny,
                         "--out", tmp_path / "x.pt")  # fmt: skip
    assert code != 0 and "not the same model" in out + err, out + err


def test_multi_scale_batches_resize_with_their_boxes_and_the_loss_follows_the_size(tiny, tmp_path):
    """Multi-scale training: each batch at a random side in (1 ± spread) × its own, a multiple of 32, its boxes
    scaled with it; the loss then places its grid at that size (the network's own size would misplace every box)."""
    import random

    from hebbian_mirror.datasets.augment import rescale

    data = YoloTrainSet(load_splits(tiny)["train"], (416, 416), letterbox=False, augment=None)
    images, targets = collate([data[i] for i in range(4)])
    random.seed(0)
    sides = set()
    for _ in range(40):
        resized, moved = rescale(images, targets, 0.25)
        side = resized.shape[3]
        sides.add(side)
        assert resized.shape[2] == side and side % 32 == 0 and 320 <= side <= 512, resized.shape
        for before, after in zip(targets, moved, strict=True):
            assert torch.equal(after[:, 0], before[:, 0])  # classes unchanged
            assert torch.allclose(after[:, 1:], before[:, 1:] * side / 416)
    assert len(sides) >= 5  # 320, 352, ..., 512 all drawn
    assert rescale(images, targets, 0.0)[0] is images

    # the trained-on boxes: what the COCO model itself sees in these images, at 320
    net = coco_net().eval()
    small = torch.nn.functional.interpolate(images, size=(320, 320), mode="bilinear", align_corners=False)
    detector = DarknetDetector.from_net(net, ModelMeta("coco", COCO_CLASSES, (320, 320)), device="cpu")
    seen = []
    for image in small:
        pixels = (image.permute(1, 2, 0) * 255).round().byte().numpy()
        found = detector.detect([pixels])[0]
        seen.append(torch.tensor([[d.class_id, *d.box] for d in found], dtype=torch.float32).reshape(-1, 5))
    assert sum(len(t) for t in seen) > 0
    loss_fn = YoloLoss(net)
    with torch.no_grad():
        outputs = net(small)
        _, right = loss_fn(outputs, seen, size=(320, 320))
        _, wrong = loss_fn(outputs, seen)  # the grid laid out for 416
    assert right["box"] < 0.5 * wrong["box"], (right, wrong)

    cfg = config(tiny, tmp_path / "ms", multi_scale=0.5, epochs=1)
    summary = train(cfg, load_settings(offline=True, device="cpu"))
    assert summary["epochs_run"] == 1 and np.isfinite(summary["history"][0]["loss"])
    assert checkpoint.read(tmp_path / "ms" / "last.pt")["config"]["multi_scale"] == 0.5


def test_the_trainer_runs_its_callbacks_around_a_run(tiny, tmp_path):
    """The Python API of ``train``: a run with a callback of one's own, untracked; the hooks in order, each epoch
    seen, the result as summary.json says."""
    from hebbian_mirror.train.callbacks import Callback
    from hebbian_mirror.train.trainer import Trainer

    seen = []

    class Recorder(Callback):
        def on_start(self, trainer, prepared):
            seen.append(("start", len(prepared.train_ds.samples)))

        def on_epoch(self, epoch, metrics):
            seen.append(("epoch", epoch, "AP50" in metrics))

        def on_end(self, trainer, result):
            seen.append(("end", result.summary["best"]))

        def on_exit(self, error):
            seen.append(("exit", error))

    options = {"out": tmp_path / "run", "epochs": 2, "batch": 4, "max_steps": 1, "device": "cpu", "loader_workers": 0}
    trainer = Trainer(load_settings(device="cpu"), data=tiny, options=options, track=False, callbacks=[Recorder()])
    result = trainer.fit()
    assert [s[0] for s in seen] == ["start", "epoch", "epoch", "end", "exit"]
    assert (
        seen[0] == ("start", 12)
        and seen[1:3] == [("epoch", 0, True), ("epoch", 1, True)]
        and seen[-1] == ("exit", None)
    )
    assert result.served == result.summary["best"] == str(tmp_path / "run" / "best.pt")
    assert (tmp_path / "run" / "best.pt").is_file() and result.run is None
