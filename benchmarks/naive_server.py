"""Baseline (c) of serving.py: the original weapons-detection demo's design — a FastAPI handler that runs
the model once per request, inline. Same model, decoder and response shape as our /v1/detect."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request

from hebbian_mirror.config import load_settings
from hebbian_mirror.images import decode_image
from hebbian_mirror.models.loader import load_detector


def build(model: str) -> FastAPI:
    detector = load_detector(model, load_settings(device="cpu"))
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> dict:
        return {"ready": True}

    @app.post("/v1/detect")
    async def detect(request: Request) -> dict:
        image = decode_image(await request.body())
        (dets,) = detector.detect([image])
        return {"detections": [d.to_dict() for d in dets]}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default="yolov4-tiny")
    args = parser.parse_args()
    uvicorn.run(build(args.model), host="127.0.0.1", port=args.port, log_level="warning")
