"""The engine without HTTP: models hosted and batched, frames detected through the same batcher as requests, and
the product's own errors (no status codes) for an unknown or not yet loaded model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hebbian_mirror.config import load_settings
from hebbian_mirror.detection import Detections, DetectOptions
from hebbian_mirror.errors import ModelLoadError, ModelNotFoundError, UnavailableError
from hebbian_mirror.serving.engine import Engine

from ..fakes import FakeDetector


def test_frames_go_through_the_models_batcher_and_come_back_as_detections():
    async def go():
        seen = []
        engine = Engine.hosting(load_settings(models=["fake"], workers=0), observe=lambda name: seen.append)
        with pytest.raises(UnavailableError, match="still loading") as loading:
            engine.host(None)
        assert loading.value.retry_after == 2
        fake = FakeDetector()
        await engine.load_models({"fake": fake})
        try:
            assert engine.is_ready and engine.host(None).name == "fake"
            with pytest.raises(ModelNotFoundError, match="this server has: fake"):
                engine.host("nope")
            detect = engine.frame_detector()
            frames = [np.zeros((60, 80, 3), np.uint8), np.zeros((30, 40, 3), np.uint8)]
            found = await asyncio.gather(*(detect(f, DetectOptions(conf=0.5)) for f in frames))
            assert all(isinstance(d, Detections) for d in found)
            assert [d.image_size for d in found] == [(80, 60), (40, 30)]
            assert [d.labels for d in found] == [["person", "knife"]] * 2
            assert fake.calls == 2 and sum(s.size for s in seen) == 2  # the observer saw every batch
        finally:
            await engine.close()

    asyncio.run(go())


def test_a_model_that_fails_to_load_says_so():
    async def go():
        failed = []
        engine = Engine.hosting(
            load_settings(models=["missing=/nonexistent/model.pt"], workers=0), on_load_failure=lambda: failed.append(1)
        )
        await engine.load_models({})
        assert not engine.ready and failed == [1] and engine.hosts["missing"].status == "failed"
        with pytest.raises(ModelLoadError, match="model missing failed to load: checkpoint not found"):
            engine.host(None)
        await engine.close()

    asyncio.run(go())
