"""The Open Inference Protocol (KServe v2, Triton's HTTP API), so KServe and Triton clients work unchanged.

One request is one image: input ``image`` (BYTES ``[1]``, the encoded file) or ``pixels`` (UINT8 ``[H, W, 3]``,
RGB). The answer is four tensors: ``boxes`` FP32 ``[N, 4]`` (x1, y1, x2, y2 in pixels), ``scores`` FP32 ``[N]``,
``class_ids`` INT32 ``[N]`` and ``labels`` BYTES ``[N]``. Tensors travel as JSON or in Triton's binary tensor
data extension (``Inference-Header-Content-Length``); request parameters ``conf``, ``iou``, ``max_det`` and
``classes`` are the native API's options.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ... import __version__
from ..auth import api_key
from ..errors import APIError
from ..openapi import APISpec, error_responses
from ..pipeline import Inputs, Outcome, run
from ..state import state_of

MAX_JSON = 8_000_000  # bytes of JSON: about 0.3 s of parsing on one core
HEADER_LENGTH = "inference-header-content-length"
_DTYPES = {"FP32": "<f4", "INT32": "<i4", "UINT8": "u1", "INT64": "<i8", "FP64": "<f8"}
INPUTS = [
    {"name": "image", "datatype": "BYTES", "shape": [1]},
    {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, 3]},
]
OUTPUTS = [
    {"name": "boxes", "datatype": "FP32", "shape": [-1, 4]},
    {"name": "scores", "datatype": "FP32", "shape": [-1]},
    {"name": "class_ids", "datatype": "INT32", "shape": [-1]},
    {"name": "labels", "datatype": "BYTES", "shape": [-1]},
]
OUTPUT_NAMES = [o["name"] for o in OUTPUTS]


def _error(status: int, message: str) -> dict:
    return {"error": message}


router = APIRouter(tags=["open inference protocol"], dependencies=[api_key("detect")])
SPEC = APISpec("oip", router, prefixes=("/v2",), error_body=_error)
_ERROR_SCHEMA = {"title": "OIPError", "type": "object", "properties": {"error": {"type": "string"}}}


@router.get("/v2", summary="OIP server metadata")
async def server_metadata() -> dict:
    return {"name": "hebbian-mirror", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live", summary="OIP: the server is alive")
async def live() -> dict:
    return {"live": True}


@router.get("/v2/health/ready", summary="OIP: every model is ready (503 otherwise)")
async def ready(request: Request) -> JSONResponse:
    is_ready = state_of(request).is_ready
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


def _host_or_404(request: Request, model: str):
    host = state_of(request).hosts.get(model)
    if host is None:
        raise APIError(404, f"unknown model {model!r}; this server has: {', '.join(state_of(request).hosts)}")
    return host


@router.get("/v2/models/{model}", summary="OIP model metadata", responses=error_responses(_ERROR_SCHEMA, (404,)))
@router.get("/v2/models/{model}/versions/{version}", include_in_schema=False)
async def model_metadata(request: Request, model: str, version: str = "1") -> dict:
    host = _host_or_404(request, model)
    family = host.detector.info().get("family", "") if host.detector is not None else ""
    return {"name": host.name, "versions": ["1"], "platform": f"hebbian-mirror/{family}", "inputs": INPUTS,
            "outputs": OUTPUTS}  # fmt: skip


@router.get("/v2/models/{model}/ready", summary="OIP: the model is ready (503 otherwise)")
@router.get("/v2/models/{model}/versions/{version}/ready", include_in_schema=False)
async def model_ready(request: Request, model: str, version: str = "1") -> JSONResponse:
    host = _host_or_404(request, model)
    is_ready = host.status == "ready"
    return JSONResponse({"name": host.name, "ready": is_ready}, status_code=200 if is_ready else 503)


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The request's JSON and, with the binary extension, the bytes after it. The JSON part is at most
    :data:`MAX_JSON` bytes: parsing holds Python's GIL, so a larger one would slow every other request."""
    try:
        length = len(body) if header_length is None else int(header_length)
        if not 0 <= length <= len(body):
            raise ValueError(f"{HEADER_LENGTH} {length} is outside the body's {len(body)} bytes")
        if length > MAX_JSON:
            raise APIError(
                413,
                f"the JSON part of an inference request is at most {MAX_JSON // 1_000_000} MB: send large pixel "
                f"arrays as binary tensor data ({HEADER_LENGTH}), or the image file as BYTES",
            )
        doc = json.loads(body[:length])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise APIError(400, f"malformed inference request: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise APIError(400, "malformed inference request: a JSON object with an 'inputs' list is required")
    return doc, body[length:]


def _bytes_elements(raw: bytes, most: int = 2) -> list[bytes]:
    """Triton's BYTES serialisation: each element a little-endian uint32 length, then its bytes (at most
    ``most`` are read: one image is expected, and a second says there are too many)."""
    out, pos = [], 0
    while pos < len(raw) and len(out) < most:
        if pos + 4 > len(raw):
            raise APIError(400, "malformed BYTES tensor: truncated length prefix")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise APIError(400, "malformed BYTES tensor: an element runs past the end of its data")
        out.append(raw[pos : pos + n])
        pos += n
    return out


def read_tensor(spec: dict, binary: bytes, offset: int) -> tuple[str, Any, int]:
    """(name, value, new offset) of one input: the image's bytes for BYTES, an array for UINT8."""
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if name not in ("image", "pixels"):
        raise APIError(400, f"unexpected input {name!r}: send 'image' (BYTES, the encoded file) or 'pixels' (UINT8)")
    want = "BYTES" if name == "image" else "UINT8"
    if datatype != want:
        raise APIError(400, f"input {name!r} must be {want}, got {datatype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise APIError(400, f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise APIError(400, f"input {name!r}: 'parameters' must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise APIError(400, f"input {name!r}: binary_data_size {size!r} runs past the end of the body")
        raw, offset = binary[offset : offset + size], offset + size
        values: Any = _bytes_elements(raw) if want == "BYTES" else np.frombuffer(raw, np.uint8)
    elif "data" in spec:
        values = spec["data"]
    else:
        raise APIError(400, f"input {name!r} has neither 'data' nor binary_data_size")
    if want == "BYTES":
        return name, _one_image(values), offset
    return name, _pixels(values, shape), offset


def _one_image(values: Any) -> bytes:
    items = values if isinstance(values, list) else [values]
    while len(items) == 1 and isinstance(items[0], list):
        items = items[0]
    if len(items) != 1:
        raise APIError(400, "one image per request, got several: send them as concurrent requests")
    item = items[0]
    if isinstance(item, bytes):
        return item
    if not isinstance(item, str):
        raise APIError(400, "input 'image': JSON data must be the file as a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except ValueError:  # binascii.Error, or a string that is not ASCII
        raise APIError(400, "input 'image': JSON data must be the file as a base64 string") from None


def _pixels(values: Any, shape: list[int]) -> np.ndarray:
    dims = shape[1:] if len(shape) == 4 and shape[0] == 1 else shape
    if len(dims) != 3 or dims[2] != 3:
        raise APIError(400, f"input 'pixels': shape must be [H, W, 3] (or [1, H, W, 3]), got {shape}")
    if dims[0] * dims[1] > 1 << 31:
        raise APIError(413, f"input 'pixels': {dims[0]}×{dims[1]} is too large")
    try:
        array = np.asarray(values, dtype=np.uint8) if not isinstance(values, np.ndarray) else values
        return array.reshape(dims)
    except (ValueError, TypeError, OverflowError) as exc:
        raise APIError(400, f"input 'pixels': its data does not fit shape {shape}: {exc}") from None


def _parameters(inputs: Inputs, params: Any) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        raise APIError(400, "malformed inference request: 'parameters' must be an object")
    for key, kind in (("conf", float), ("iou", float), ("max_det", int)):
        if key in params:
            try:
                setattr(inputs, key, kind(params[key]))
            except (TypeError, ValueError, OverflowError):
                raise APIError(422, f"invalid parameter: {key} must be a number, got {params[key]!r}") from None
    if inputs.max_det is not None and not 1 <= inputs.max_det <= 10_000:
        raise APIError(422, f"invalid parameter: max_det must be in [1, 10000], got {inputs.max_det}")
    if "classes" in params:
        inputs.classes = str(params["classes"])


async def _read(request: Request, inputs: Inputs) -> bytes | np.ndarray:
    body, length = await request.body(), request.headers.get(HEADER_LENGTH)
    doc, value = await asyncio.to_thread(_parse, body, length)  # JSON pixel arrays take long: off the event loop
    _parameters(inputs, doc.get("parameters"))
    request.state.oip = doc
    return value


def _parse(body: bytes, length: str | None) -> tuple[dict, bytes | np.ndarray]:
    """The request's document and its one input's value (the encoded image, or the pixels as an array)."""
    doc, binary = split_body(body, length)
    if len(doc["inputs"]) != 1 or not isinstance(doc["inputs"][0], dict):
        raise APIError(400, f"one input per request ('image' or 'pixels'), got {len(doc['inputs'])}")
    _check_outputs(doc.get("outputs"))
    return doc, read_tensor(doc["inputs"][0], binary, 0)[1]


def _check_outputs(wanted: Any) -> None:
    """The requested outputs, checked before the model runs."""
    if wanted is None:
        return
    if not isinstance(wanted, list) or not all(isinstance(w, dict) for w in wanted):
        raise APIError(400, "malformed inference request: 'outputs' must be a list of objects")
    for w in wanted:
        if w.get("name") not in OUTPUT_NAMES:
            raise APIError(400, f"unknown output {w.get('name')!r}; this model answers {', '.join(OUTPUT_NAMES)}")
        if not isinstance(w.get("parameters") or {}, dict):
            raise APIError(400, f"output {w['name']!r}: 'parameters' must be an object")


def _tensors(out: Outcome) -> dict[str, tuple[str, list[int], np.ndarray | list[bytes]]]:
    found = out.result.detections
    n = len(found)
    return {
        "boxes": ("FP32", [n, 4], found.boxes.astype("<f4")),
        "scores": ("FP32", [n], found.scores.astype("<f4")),
        "class_ids": ("INT32", [n], found.class_ids.astype("<i4")),
        "labels": ("BYTES", [n], [label.encode() for label in found.labels]),
    }


def _serialise(datatype: str, value: np.ndarray | list[bytes]) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in value)
    return np.ascontiguousarray(value, dtype=_DTYPES[datatype]).tobytes()


async def _encode(request: Request, out: Outcome) -> Response:
    doc = request.state.oip
    binary_default = bool((doc.get("parameters") or {}).get("binary_data_output", False))  # checked in _read
    tensors = _tensors(out)
    wanted = doc.get("outputs") or [{"name": name} for name in tensors]
    answers, chunks = [], []
    for spec in wanted:  # checked in _read
        name = spec["name"]
        datatype, shape, value = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if (spec.get("parameters") or {}).get("binary_data", binary_default):
            chunk = _serialise(datatype, value)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = [v.decode() for v in value] if datatype == "BYTES" else value.reshape(-1).tolist()
        answers.append(entry)
    body: dict[str, Any] = {"model_name": out.host.name, "model_version": "1", "outputs": answers}
    if "id" in doc:
        body["id"] = doc["id"]
    header = json.dumps(body).encode()
    if not chunks:
        return Response(header, media_type="application/json")
    headers = {"Inference-Header-Content-Length": str(len(header))}
    return Response(header + b"".join(chunks), media_type="application/octet-stream", headers=headers)


@router.post(
    "/v2/models/{model}/infer",
    summary="OIP inference: one image in (BYTES 'image' or UINT8 'pixels'), detections out as tensors",
    responses=error_responses(_ERROR_SCHEMA, (400, 401, 404, 413, 422, 503, 504)),
)
@router.post("/v2/models/{model}/versions/{version}/infer", include_in_schema=False)
async def infer(request: Request, model: str, version: str = "1") -> Response:
    inputs = Inputs(lambda i: _read(request, i), model)
    return await run(request, inputs, _encode)
