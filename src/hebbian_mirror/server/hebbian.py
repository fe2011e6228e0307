"""The original Hebbian Mirror routes (Rust / YOLOv3 service) and the weapons demo's /predict."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .core import annotate, check_api_key, detect_options, form_image, raw_image_body, run_detection, state_of

router = APIRouter(tags=["hebbian-mirror"])

_RAW = {"requestBody": {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}, "required": True}}


async def _raw_detect(request: Request):
    check_api_key(request)
    state = state_of(request)
    host = state.host(None)
    result = await run_detection(request, host, raw_image_body(request), detect_options(state, host.detector))
    return host, result


@router.get("/recognition/object/boxes_names", summary="Class names of the default model")
async def boxes_names(request: Request) -> list[str]:
    check_api_key(request)
    host = state_of(request).host(None)
    return list(host.detector.class_names)


@router.post("/recognition/object/boxes", summary="Boxes per class (raw image body)", openapi_extra=_RAW)
async def boxes(request: Request) -> list[list[dict]]:
    """One list per class, in class-name order, of `{xmin, ymin, xmax, ymax, confidence, class_confidence}` in
    original-image pixels. Our detectors give one calibrated score, reported in both confidence fields."""
    host, result = await _raw_detect(request)
    per_class: list[list[dict]] = [[] for _ in host.detector.class_names]
    for d in result.detections:
        x1, y1, x2, y2 = d.box
        per_class[d.class_id].append(
            {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2, "confidence": d.score, "class_confidence": d.score}
        )
    return per_class


@router.post(
    "/recognition/object/image",
    summary="The image with boxes and labels drawn (raw image body)",
    openapi_extra=_RAW,
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def image(request: Request) -> Response:
    _, result = await _raw_detect(request)
    jpeg = await annotate(request, result)
    return Response(jpeg, media_type="image/jpeg")


@router.post(
    "/predict",
    summary="The weapons demo's route: multipart field `file`",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                }
            }
        }
    },
)
async def predict(request: Request) -> dict:
    check_api_key(request)
    state = state_of(request)
    host = state.host(None)
    data, _ = await form_image(request, "file")
    result = await run_detection(request, host, data, detect_options(state, host.detector))
    return {
        "boxes": [[round(v, 2) for v in d.box] for d in result.detections],
        "labels": [d.label for d in result.detections],
        "scores": [round(d.score, 5) for d in result.detections],
    }
