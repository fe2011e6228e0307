"""``train --nproc 2``: two CPU processes (torchrun, gloo, DistributedDataParallel, synchronised batch norm) step
exactly as one process with their global batch, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from hebbian_mirror.config import load_settings
from hebbian_mirror.models import checkpoint
from hebbian_mirror.train.augment import AugmentConfig
from hebbian_mirror.train.config import TrainConfig
from hebbian_mirror.train.loop import train

from .conftest import WEIGHTS

COMMON = ["--img-size", "160", "--device", "cpu", "--workers", "0", "--max-steps", "2", "--no-augment", "--no-track"]


def ddp(tiny, out, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hebbian_mirror", "train", "--data", str(tiny), "--out", str(out), "--nproc", "2"]
    env = dict(os.environ, HEBBIAN_MIRROR_WEIGHTS=str(WEIGHTS), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [*cmd, "--batch", "2", "--lr", "0.01", *COMMON, *extra], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def single(tiny, out, epochs: int, resume: bool = False) -> dict:
    """One process, the global batch (2 × 2) and the scaled rate (2 × 0.01)."""
    cfg = TrainConfig(
        data=str(tiny), out=str(out), epochs=epochs, batch=4, lr=0.02, img_size=160, device="cpu", workers=0,
        max_steps=2, augment=AugmentConfig.off(), eval_batch=4,
    )  # fmt: skip
    return train(cfg, load_settings(device="cpu"), resume=resume)


def assert_same_weights(a_path, b_path) -> None:
    a, b = checkpoint.read(a_path)["state_dict"], checkpoint.read(b_path)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")
        else:
            assert torch.equal(a[key], b[key]), key


def test_two_processes_equal_one_with_their_global_batch_and_resume(tiny, tmp_path):
    torch.set_num_threads(1)
    first = ddp(tiny, tmp_path / "ddp", "--epochs", "1")
    assert first.stderr.count("epoch 1:") + first.stdout.count("epoch 1:") == 1  # rank 0 alone reports
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["epochs_run"] == 1
    single(tiny, tmp_path / "one", epochs=1)
    before = checkpoint.read(tmp_path / "one" / "last.pt")["state_dict"]
    assert_same_weights(tmp_path / "ddp" / "last.pt", tmp_path / "one" / "last.pt")

    ddp(tiny, tmp_path / "ddp", "--epochs", "2", "--resume")
    single(tiny, tmp_path / "one", epochs=2, resume=True)
    assert_same_weights(tmp_path / "ddp" / "last.pt", tmp_path / "one" / "last.pt")
    resumed = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    after = checkpoint.read(tmp_path / "ddp" / "last.pt")["state_dict"]
    moved = sum(float((after[k] - before[k]).abs().max()) for k in after if after[k].is_floating_point())
    assert moved > 1e-3, "the second epoch did not train"
