"""DeepStack / CodeProject.AI compatible detection API, so camera software (Blue Iris, Frigate,
Home Assistant, Agent DVR, ...) and their client libraries work unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from ...boxes import held_by
from ..auth import api_key
from ..bodies import FORM_TYPES, form_image, media_type, read_form
from ..errors import APIError
from ..openapi import DEFAULT_MODEL_ERRORS, IMAGE_ERRORS, APISpec, body_schema, error_responses
from ..pipeline import Inputs, Outcome, run
from ..state import state_of


def _error(status: int, message: str) -> dict:
    return {"success": False, "error": message, "code": status}  # clients look for success / error


router = APIRouter(tags=["deepstack"], dependencies=[api_key("detect", form_field="api_key")])
SPEC = APISpec("deepstack", router, prefixes=("/v1/vision/",), error_body=_error)

_ERROR_SCHEMA = {
    "title": "DeepStackError",
    "type": "object",
    "properties": {"success": {"type": "boolean"}, "error": {"type": "string"}, "code": {"type": "integer"}},
    "required": ["success", "error", "code"],
}
_IMAGE_ERRORS = error_responses(_ERROR_SCHEMA, IMAGE_ERRORS)
_FORM = body_schema("image", min_confidence={"type": "number", "default": 0.4}, api_key={"type": "string"})


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


def _inputs(request: Request, model: str | None) -> Inputs:
    async def read(inputs: Inputs) -> bytes:
        data, fields = await form_image(request, "image")
        inputs.conf = _min_confidence(fields)
        return data

    return Inputs(read, model)


def _encoder(command: str):
    async def encode(request: Request, out: Outcome) -> dict:
        holders = held_by(out.result.detections)  # an extra field on dangerous predictions: who holds it
        predictions = [
            {
                "label": d.label,
                "confidence": round(d.score, 5),
                "x_min": round(d.box[0]),
                "y_min": round(d.box[1]),
                "x_max": round(d.box[2]),
                "y_max": round(d.box[3]),
            }
            | ({"held_by": holders[i]} if i in holders else {})
            for i, d in enumerate(out.result.detections)
        ]
        return {
            "success": True,
            "predictions": predictions,
            "count": len(predictions),
            "message": f"Found {len(predictions)} object{'s' if len(predictions) != 1 else ''}",
            "inferenceMs": round(out.result.inference_ms),
            "processMs": round(out.total_ms),
            "moduleId": "HebbianMirror",
            "moduleName": f"Hebbian Mirror ({out.host.name})",
            "command": command,
            "code": 200,
            "processedBy": "localhost",
            "timestampUTC": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        }

    return encode


@router.post(
    "/v1/vision/detection",
    summary="DeepStack object detection (default model)",
    openapi_extra=_FORM,
    responses=error_responses(_ERROR_SCHEMA, DEFAULT_MODEL_ERRORS),
)
async def detection(request: Request) -> dict:
    return await run(request, _inputs(request, None), _encoder("detect"))


@router.post(
    "/v1/vision/custom/list",
    summary="DeepStack: the models this server runs",
    responses=error_responses(_ERROR_SCHEMA, (400, 401, 408, 413, 503)),
)
async def custom_list(request: Request) -> dict:
    if media_type(request) in FORM_TYPES:
        await read_form(request)  # a malformed form is a 400 here too
    return {
        "success": True,
        "models": list(state_of(request).hosts),
        "moduleId": "HebbianMirror",
        "command": "list-custom",
    }


@router.post(
    "/v1/vision/custom/{model}",
    summary="DeepStack custom-model detection",
    openapi_extra=_FORM,
    responses=_IMAGE_ERRORS,
)
async def custom(request: Request, model: str) -> dict:
    return await run(request, _inputs(request, model), _encoder("custom"))
