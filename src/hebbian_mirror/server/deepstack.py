"""DeepStack / CodeProject.AI compatible detection API, so camera software (Blue Iris, Frigate,
Home Assistant, Agent DVR, ...) and their client libraries work unchanged."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request

from .core import check_api_key, detect_options, form_image, run_detection, state_of
from .errors import APIError

router = APIRouter(tags=["deepstack"])

_FORM = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "min_confidence": {"type": "number", "default": 0.4},
                        "api_key": {"type": "string"},
                    },
                    "required": ["image"],
                }
            }
        },
        "required": True,
    }
}


def _min_confidence(fields: dict[str, str]) -> float:
    raw = fields.get("min_confidence", "").strip()
    if not raw:
        return 0.4
    try:
        value = float(raw)
    except ValueError:
        raise APIError(422, f"invalid parameter: min_confidence must be a number, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise APIError(422, f"invalid parameter: min_confidence must be in [0, 1], got {value}")
    return value


async def _detection(request: Request, model: str | None, command: str) -> dict:
    start = time.perf_counter()
    data, fields = await form_image(request, "image")
    check_api_key(request, fields.get("api_key"))
    state = state_of(request)
    host = state.host(model)
    options = detect_options(state, host.detector, conf=_min_confidence(fields))
    result = await run_detection(request, host, data, options)
    predictions = [
        {
            "label": d.label,
            "confidence": round(d.score, 5),
            "x_min": round(d.box[0]),
            "y_min": round(d.box[1]),
            "x_max": round(d.box[2]),
            "y_max": round(d.box[3]),
        }
        for d in result.detections
    ]
    return {
        "success": True,
        "predictions": predictions,
        "count": len(predictions),
        "message": f"Found {len(predictions)} object{'s' if len(predictions) != 1 else ''}",
        "inferenceMs": round(result.inference_ms),
        "processMs": round((time.perf_counter() - start) * 1000),
        "moduleId": "HebbianMirror",
        "moduleName": f"Hebbian Mirror ({host.name})",
        "command": command,
        "code": 200,
        "processedBy": "localhost",
        "timestampUTC": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }


@router.post("/v1/vision/detection", summary="DeepStack object detection (default model)", openapi_extra=_FORM)
async def detection(request: Request) -> dict:
    return await _detection(request, None, "detect")


@router.post("/v1/vision/custom/list", summary="DeepStack: the models this server runs")
async def custom_list(request: Request) -> dict:
    fields: dict[str, str] = {}
    if request.headers.get("content-type", "").startswith(("multipart/", "application/x-www-form-urlencoded")):
        fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    check_api_key(request, fields.get("api_key"))
    return {
        "success": True,
        "models": list(state_of(request).hosts),
        "moduleId": "HebbianMirror",
        "command": "list-custom",
    }


@router.post("/v1/vision/custom/{model}", summary="DeepStack custom-model detection", openapi_extra=_FORM)
async def custom(request: Request, model: str) -> dict:
    return await _detection(request, model, "custom")
