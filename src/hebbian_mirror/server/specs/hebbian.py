"""The original Hebbian Mirror routes (the Rust / YOLOv3 service): raw image bodies, the default model."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..auth import api_key
from ..bodies import raw_image_body
from ..openapi import DEFAULT_MODEL_ERRORS, PLAIN_ERROR_SCHEMA, READ_ERRORS, APISpec, body_schema, error_responses
from ..pipeline import Inputs, Outcome, annotated_jpeg, run
from ..state import state_of

router = APIRouter(tags=["hebbian-mirror"], dependencies=[api_key("detect")])
SPEC = APISpec("hebbian-mirror", router, prefixes=("/recognition/",))

_RAW = body_schema(raw=True)
_IMAGE_ERRORS = error_responses(PLAIN_ERROR_SCHEMA, DEFAULT_MODEL_ERRORS)


@router.get(
    "/recognition/object/boxes_names",
    summary="Class names of the default model",
    responses=error_responses(PLAIN_ERROR_SCHEMA, READ_ERRORS),
)
async def boxes_names(request: Request) -> list[str]:
    return list(state_of(request).host(None).detector.class_names)


async def _per_class(request: Request, out: Outcome) -> list[list[dict]]:
    per_class: list[list[dict]] = [[] for _ in out.host.detector.class_names]
    for d in out.result.detections:
        x1, y1, x2, y2 = d.box
        per_class[d.class_id].append(
            {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2, "confidence": d.score, "class_confidence": d.score}
        )
    return per_class


async def _jpeg(request: Request, out: Outcome) -> Response:
    return Response(await annotated_jpeg(request, out), media_type="image/jpeg")


@router.post(
    "/recognition/object/boxes",
    summary="Boxes per class (raw image body)",
    openapi_extra=_RAW,
    responses=_IMAGE_ERRORS,
)
async def boxes(request: Request) -> list[list[dict]]:
    """One list per class, in class-name order, of `{xmin, ymin, xmax, ymax, confidence, class_confidence}` in
    original-image pixels. Our detectors give one calibrated score, reported in both confidence fields."""
    return await run(request, Inputs(lambda _: raw_image_body(request)), _per_class)


@router.post(
    "/recognition/object/image",
    summary="The image with boxes and labels drawn (raw image body)",
    openapi_extra=_RAW,
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}} | _IMAGE_ERRORS,
)
async def image(request: Request) -> Response:
    return await run(request, Inputs(lambda _: raw_image_body(request)), _jpeg, draws=True)
