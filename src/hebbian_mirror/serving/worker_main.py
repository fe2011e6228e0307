"""The code that runs inside a model's worker process (see :mod:`.workers` for the server's side).

Messages on the pipe, server → worker: ``("batch", seq, block, layout, options, threads)`` with the images in
the shared block ``block`` at ``layout = [(offset, shape), ...]`` (or, when ``block`` is None, ``layout`` is the
arrays themselves; an encoded image is a 1-D array) and the torch threads to run it on (None: as they are),
and ``("stop",)``. Worker → server: ``("ready", meta, info)`` or ``("failed", message)`` once, then per
batch ``("done", seq, [("ok", N×6 array, (width, height)) or ("error", exception), ...])``, or
``("error", seq, message)`` when the batch itself failed.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from ..config import DetectSettings, LimitSettings, ModelSettings
from .runners import Item, ItemResult, decode_pool, detect_items, load_and_warm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is told: which model, from where, and only the settings it uses (how to load the
    model, on which device; the detection defaults it warms up with; the limits of the images it decodes)."""

    model: str
    source: str
    index: int
    loading: ModelSettings
    detect: DetectSettings
    limits: LimitSettings
    log_level: str = "info"


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """The worker process: load the model, say ``ready``, then run batches until told to stop or the server
    is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and SIGTERM reach the server, which drains first
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=spec.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    import torch

    threads = torch.get_num_threads()
    try:
        detector = load_and_warm(spec.source, spec.loading, spec.detect, spec.limits.max_batch_size)
    except Exception as exc:  # the server reports it and does not start
        conn.send(("failed", str(exc) or type(exc).__name__))
        return
    conn.send(("ready", detector.meta.to_dict(), detector.info()))
    decoders = decode_pool()
    max_pixels, budget = spec.limits.max_pixels, spec.limits.decode_timeout
    blocks: dict[str, SharedMemory] = {}
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the server is gone
                return
            if message[0] == "stop":
                return
            _, seq, block, layout, options, wanted = message
            if wanted and wanted != threads:
                torch.set_num_threads(wanted)
                threads = wanted
            try:
                if block is None:
                    items = layout
                else:
                    shm = _attach(blocks, block)
                    items = [_item(shm, off, shape) for off, shape in layout]
                results = detect_items(detector, items, options, decoders, max_pixels, budget)
                del items
                conn.send(("done", seq, [_packed(r) for r in results]))
            except Exception as exc:
                log.exception("batch failed")
                conn.send(("error", seq, f"{type(exc).__name__}: {exc}"))
    finally:
        for shm in blocks.values():
            shm.close()


def _attach(blocks: dict[str, SharedMemory], name: str) -> SharedMemory:
    """The server's shared block ``name``, attached once (an older, smaller one is let go)."""
    if name not in blocks:
        for old in blocks.values():
            old.close()
        blocks.clear()
        blocks[name] = SharedMemory(name=name)
    return blocks[name]


def _item(shm: SharedMemory, offset: int, shape: tuple[int, ...]) -> Item:
    """An item in the shared block: encoded bytes (1-D) are copied out, pixels are read in place."""
    if len(shape) == 1:
        return bytes(shm.buf[offset : offset + shape[0]])
    return np.ndarray(shape, np.uint8, buffer=shm.buf, offset=offset)


def _packed(outcome: ItemResult) -> tuple:
    """One image's outcome for the pipe: its detections as they are (one array, the class names and the image
    size), or its error."""
    if isinstance(outcome, Exception):
        return ("error", outcome)
    return ("ok", outcome)
