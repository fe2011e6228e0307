"""The weapons-detection demo's route: ``POST /predict`` with multipart field ``file``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..auth import api_key
from ..bodies import form_image
from ..openapi import DEFAULT_MODEL_ERRORS, PLAIN_ERROR_SCHEMA, APISpec, body_schema, error_responses
from ..pipeline import Inputs, Outcome, run

router = APIRouter(tags=["hebbian-mirror"], dependencies=[api_key("detect")])
SPEC = APISpec("weapons-demo", router, prefixes=("/predict",))

_FORM = body_schema("file")


async def _read(request: Request) -> bytes:
    return (await form_image(request, "file"))[0]


async def _lists(request: Request, out: Outcome) -> dict:
    detections = out.result.detections
    return {
        "boxes": [[round(v, 2) for v in d.box] for d in detections],
        "labels": [d.label for d in detections],
        "scores": [round(d.score, 5) for d in detections],
    }


@router.post(
    "/predict",
    summary="The weapons demo's route: multipart field `file`",
    openapi_extra=_FORM,
    responses=error_responses(PLAIN_ERROR_SCHEMA, DEFAULT_MODEL_ERRORS),
)
async def predict(request: Request) -> dict:
    return await run(request, Inputs(lambda _: _read(request)), _lists)
