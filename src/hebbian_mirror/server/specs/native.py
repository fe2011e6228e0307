"""The native API: /v1/detect, /v1/detect/annotated, /v1/models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ...boxes import held_by
from ..auth import api_key
from ..bodies import image_body
from ..openapi import IMAGE_ERRORS, PLAIN_ERROR_SCHEMA, READ_ERRORS, APISpec, body_schema, error_responses
from ..pipeline import Inputs, Outcome, annotated_jpeg, run
from ..state import state_of

router = APIRouter(tags=["native"], dependencies=[api_key("detect")])
SPEC = APISpec("native", router, prefixes=("/v1/detect", "/v1/models"))

_IMAGE_BODY = body_schema("image", raw=True)

Model = Annotated[str | None, Query(description="Model name (default: the server's first model).")]
Conf = Annotated[float | None, Query(ge=0.0, le=1.0, description="Confidence threshold.")]
Iou = Annotated[float | None, Query(ge=0.0, le=1.0, description="NMS IoU threshold.")]
Classes = Annotated[str | None, Query(description="Keep only these classes: names or ids, comma-separated.")]
MaxDet = Annotated[int | None, Query(ge=1, le=10_000, description="Most detections to return.")]
Merge = Annotated[
    bool | None,
    Query(description="Darknet models: box voting (each kept box averaged with its class's overlapping ones)."),
]


async def _inputs(
    request: Request,
    model: Model = None,
    conf: Conf = None,
    iou: Iou = None,
    classes: Classes = None,
    max_det: MaxDet = None,
    merge: Merge = None,
) -> Inputs:
    """Multipart field `image` or the raw body, with the query's model and thresholds."""
    return Inputs(lambda _: image_body(request), model, conf, iou, max_det, classes, merge)


DetectQuery = Annotated[Inputs, Depends(_inputs)]


async def _json(request: Request, out: Outcome) -> dict:
    result = out.result
    width, height = result.size
    holders = held_by(result.detections)
    detections = []
    for i, d in enumerate(result.detections):
        entry = {"box": [round(v, 2) for v in d.box], "score": round(d.score, 5), "class_id": d.class_id}
        entry |= {"label": d.label} | ({"held_by": holders[i]} if i in holders else {})
        entry |= d.parts()  # a verified model: the detector's own score and the verifier's
        detections.append(entry)
    return {
        "model": out.host.name,
        "image": {"width": width, "height": height},
        "detections": detections,
        "timing": {
            "queue_ms": round(result.queue_ms, 2),
            "inference_ms": round(result.inference_ms, 2),
            "total_ms": round(out.total_ms, 2),
            "batch_size": result.batch_size,
            "worker": result.worker,
        },
    }


async def _jpeg(request: Request, out: Outcome) -> Response:
    jpeg = await annotated_jpeg(request, out)
    return Response(jpeg, media_type="image/jpeg", headers={"X-Detections": str(len(out.result.detections))})


_IMAGE_ERRORS = error_responses(PLAIN_ERROR_SCHEMA, IMAGE_ERRORS)


@router.post("/v1/detect", summary="Detect objects in one image", openapi_extra=_IMAGE_BODY, responses=_IMAGE_ERRORS)
async def detect(request: Request, inputs: DetectQuery) -> dict:
    """Multipart field `image`, or the image bytes as the body. Boxes are `[x1, y1, x2, y2]` in pixels of the
    image as sent (EXIF orientation applied)."""
    return await run(request, inputs, _json)


@router.post(
    "/v1/detect/annotated",
    summary="The image with its detections drawn, as JPEG",
    openapi_extra=_IMAGE_BODY,
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}} | _IMAGE_ERRORS,
)
async def detect_annotated(request: Request, inputs: DetectQuery) -> Response:
    return await run(request, inputs, _jpeg, draws=True)


@router.get(
    "/v1/models", summary="The models this server runs", responses=error_responses(PLAIN_ERROR_SCHEMA, READ_ERRORS)
)
async def models(request: Request) -> dict:
    state = state_of(request)
    out = []
    for host in state.hosts.values():
        entry = {"name": host.name, "default": host.name == state.default_model, "status": host.status}
        if host.detector is not None:
            info = host.detector.info()
            entry |= {k: info[k] for k in ("classes", "input_size", "device", "half", "family", "refines", "augments")}
            # every class, in the order of `classes`: the name to show people (the class name where none is set)
            entry["display_names"] = {c: info["display_names"].get(c, c) for c in info["classes"]}
            entry["workers"] = host.workers()
        out.append(entry)
    return {"models": out}
