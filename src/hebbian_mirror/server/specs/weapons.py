"""The weapons-detection demo's route: ``POST /predict`` with multipart field ``file``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..auth import api_key
from ..pipeline import Inputs, Outcome, run
from ..requests import form_image
from ..spec import APISpec, body_schema

router = APIRouter(tags=["hebbian-mirror"], dependencies=[api_key()])
SPEC = APISpec("weapons-demo", router, prefixes=("/predict",))

_FORM = body_schema("file")


async def _read(request: Request) -> Inputs:
    data, _ = await form_image(request, "file")
    return Inputs(data)


async def _lists(request: Request, out: Outcome) -> dict:
    detections = out.result.detections
    return {
        "boxes": [[round(v, 2) for v in d.box] for d in detections],
        "labels": [d.label for d in detections],
        "scores": [round(d.score, 5) for d in detections],
    }


@router.post("/predict", summary="The weapons demo's route: multipart field `file`", openapi_extra=_FORM)
async def predict(request: Request) -> dict:
    return await run(request, _read(request), _lists)
