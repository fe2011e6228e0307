"""The native API: /v1/detect, /v1/detect/annotated, /v1/models."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .core import (
    annotate,
    check_api_key,
    detect_options,
    form_image,
    media_type,
    raw_image_body,
    run_detection,
    state_of,
)

router = APIRouter(tags=["native"])

_IMAGE_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
        "required": True,
    }
}

Model = Annotated[str | None, Query(description="Model name (default: the server's first model).")]
Conf = Annotated[float | None, Query(ge=0.0, le=1.0, description="Confidence threshold.")]
Iou = Annotated[float | None, Query(ge=0.0, le=1.0, description="NMS IoU threshold.")]
Classes = Annotated[str | None, Query(description="Keep only these classes: names or ids, comma-separated.")]
MaxDet = Annotated[int | None, Query(ge=1, le=10_000, description="Most detections to return.")]


async def _detect(request: Request, model, conf, iou, classes, max_det):
    check_api_key(request)
    state = state_of(request)
    host = state.host(model)
    options = detect_options(state, host.detector, conf, iou, max_det, classes)
    result = await run_detection(request, host, _image_bytes(request), options)
    return host, result


async def _image_bytes(request: Request) -> bytes:
    if media_type(request) == "multipart/form-data":
        return (await form_image(request, "image"))[0]
    return await raw_image_body(request)


@router.post("/v1/detect", summary="Detect objects in one image", openapi_extra=_IMAGE_BODY)
async def detect(
    request: Request,
    model: Model = None,
    conf: Conf = None,
    iou: Iou = None,
    classes: Classes = None,
    max_det: MaxDet = None,
) -> dict:
    """Multipart field `image`, or the image bytes as the body. Boxes are `[x1, y1, x2, y2]` in pixels of the
    image as sent (EXIF orientation applied)."""
    host, result = await _detect(request, model, conf, iou, classes, max_det)
    image = result.image
    total_ms = (time.perf_counter() - request.scope["hm_start"]) * 1000
    return {
        "model": host.name,
        "image": {"width": image.shape[1], "height": image.shape[0]},
        "detections": [
            {"box": [round(v, 2) for v in d.box], "score": round(d.score, 5), "class_id": d.class_id, "label": d.label}
            for d in result.detections
        ],
        "timing": {
            "queue_ms": round(result.queue_ms, 2),
            "inference_ms": round(result.inference_ms, 2),
            "total_ms": round(total_ms, 2),
            "batch_size": result.batch_size,
        },
    }


@router.post(
    "/v1/detect/annotated",
    summary="The image with its detections drawn, as JPEG",
    openapi_extra=_IMAGE_BODY,
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def detect_annotated(
    request: Request,
    model: Model = None,
    conf: Conf = None,
    iou: Iou = None,
    classes: Classes = None,
    max_det: MaxDet = None,
) -> Response:
    _, result = await _detect(request, model, conf, iou, classes, max_det)
    jpeg = await annotate(request, result)
    return Response(jpeg, media_type="image/jpeg", headers={"X-Detections": str(len(result.detections))})


@router.get("/v1/models", summary="The models this server runs")
async def models(request: Request) -> dict:
    check_api_key(request)
    state = state_of(request)
    out = []
    for host in state.hosts.values():
        entry = {
            "name": host.name,
            "default": host.name == state.default_model,
            "status": "ready" if host.batcher else ("failed" if host.error else "loading"),
        }
        if host.detector is not None:
            info = host.detector.info()
            entry |= {
                "classes": info["classes"],
                "input_size": info["input_size"],
                "device": info["device"],
                "half": info["half"],
                "family": info.get("family"),
            }
        out.append(entry)
    return {"models": out}
