"""Peer (d) of serving.py: LitServe serving our own detector — the model inside a ``LitAPI`` (decode in
``decode_request``, ``detect`` on the batch in ``predict``), LitServe's dynamic batching (8 images, 2 ms) and
one inference worker process. Installed with the ``bench`` extra (``pip install -e .[bench]``)."""

from __future__ import annotations

import argparse

import litserve as ls

from hebbian_mirror.config import load_settings
from hebbian_mirror.images import decode_image
from hebbian_mirror.models.loader import load_detector


class DetectorAPI(ls.LitAPI):
    def __init__(self, model: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model

    def setup(self, device: str) -> None:
        self.detector = load_detector(self.model, load_settings(device="cpu"))

    def decode_request(self, request):
        return decode_image(request["file"].file.read())

    def predict(self, images):
        return self.detector.detect(list(images))

    def encode_response(self, detections) -> dict:
        return {"detections": [d.to_dict() for d in detections]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--model", default="yolov4-tiny")
    args = parser.parse_args()
    api = DetectorAPI(args.model, max_batch_size=8, batch_timeout=0.002)
    ls.LitServer(api, accelerator="cpu", workers_per_device=1).run(port=args.port, log_level="warning")
