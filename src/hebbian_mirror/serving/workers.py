"""Worker processes: each loads a model in a spawned process and runs one batch at a time for the batcher.

The batch's images go through a shared-memory block (written once by the server, read in place by the worker,
which decodes them), the detections come back as each image's ``Detections`` (one small ``N×6`` array). So the
model's Python (decoding, pre- and post-processing, NMS, building results) never waits on the GIL of the HTTP
front end, and HTTP never waits on the model's.
When the process dies (killed, out of memory, a crash in native code) the batch it held fails with
:class:`WorkerCrashedError` and a new process is started; a batch that hangs past its time is killed the same
way. The worker ignores SIGINT / SIGTERM: the server drains its queue through the workers, then stops them;
a worker whose server is gone sees its pipe close and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from ..config import DetectSettings, LimitSettings, ModelSettings, Settings
from ..detection import DetectOptions
from ..errors import ModelLoadError, WorkerCrashedError
from ..meta import ModelMeta
from .runners import Item, ItemResult, ModelInfo
from .worker_main import WorkerSpec, worker_main

log = logging.getLogger(__name__)

_SHM_STEP = 8 << 20  # shared blocks grow in steps of 8 MiB


class CoreShare:
    """The CPU cores the worker processes of one model share: a worker that starts a batch while the others are
    idle runs it on every core; one that starts while others are busy runs on its share (cores / workers), so
    under load each worker has cores of its own and none waits on another's threads."""

    def __init__(self, cores: int, workers: int) -> None:
        self.cores, self.workers, self.busy = cores, workers, 0

    def take(self) -> int:
        threads = self.cores if self.busy == 0 else max(1, self.cores // self.workers)
        self.busy += 1
        return threads

    def give(self) -> None:
        self.busy -= 1


def worker_specs(model: str, source: str, settings: Settings) -> tuple[list[WorkerSpec], CoreShare | None]:
    """The worker processes of one model: ``settings.workers`` of them (default: one per CUDA device when
    running on CUDA, else two when there are two cores or more); and, for several on the CPU, the cores they
    share. On CUDA worker ``i`` gets device ``i`` (round robin)."""
    import torch

    device = settings.device.strip().lower()
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") and torch.cuda.is_available() else 0
    cores = os.cpu_count() or 1
    count = settings.workers or gpus or min(2, cores)
    loading, detect, limits = (settings.part(c) for c in (ModelSettings, DetectSettings, LimitSettings))
    specs = [
        WorkerSpec(
            model,
            source,
            i,
            loading.model_copy(update={"device": f"cuda:{i % gpus}"}) if gpus > 1 else loading,
            detect,
            limits,
            settings.log_level,
        )
        for i in range(count)
    ]
    return specs, CoreShare(cores, count) if not gpus and count > 1 else None


@dataclass
class _Batch:
    seq: int
    future: asyncio.Future[list[tuple]]  # each image's ("ok", Detections) or ("error", exception)


class WorkerProcess:
    """One model in one worker process, restarted (with backoff) whenever it dies."""

    def __init__(
        self,
        spec: WorkerSpec,
        batch_timeout: float,
        on_restart: Callable[[WorkerProcess], None] | None = None,
        cores: CoreShare | None = None,
    ) -> None:
        self.spec, self.batch_timeout, self.on_restart, self.cores = spec, batch_timeout, on_restart, cores
        self.model, self.name = spec.model, f"{spec.model}/{spec.index}"
        self.info: ModelInfo | None = None
        self.pid: int | None = None
        self.restarts = 0
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._shm: SharedMemory | None = None
        self._up = False
        self._starting: asyncio.Future[ModelInfo] | None = None
        self._inflight: _Batch | None = None
        self._seq = 0
        self._stopping = False
        self._restart_task: asyncio.Task | None = None

    @property
    def up(self) -> bool:
        """Loaded, warm, and taking batches."""
        return self._up

    @property
    def device(self) -> str:
        return self.info.device if self.info is not None else self.spec.loading.device

    async def start(self) -> ModelInfo:
        """Spawn the process and wait until its model is loaded and warm; :class:`ModelLoadError` if not."""
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")  # never fork a process that has threads and an event loop
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(child, self.spec), name=f"hm-worker-{self.name}", daemon=True)
        await asyncio.to_thread(proc.start)
        child.close()
        self._proc, self._conn, self.pid = proc, parent, proc.pid
        self._starting = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_message)
        loop.add_reader(proc.sentinel, self._on_exit)
        try:
            self.info = await self._starting
        except BaseException:  # failed to load, died while loading, or the server is stopping
            await self._reap()
            raise
        self._up = True
        log.info("worker %s (pid %d) ready on %s", self.name, proc.pid, self.info.device)
        return self.info

    async def run(self, items: Sequence[Item], options: Sequence[DetectOptions]) -> list[ItemResult]:
        """One batch in the worker: each image's detections and size, or its own error, in order."""
        if not self._up or self._conn is None or self.info is None:
            raise WorkerCrashedError(f"worker {self.name} is restarting")
        self._seq += 1
        batch = _Batch(self._seq, asyncio.get_running_loop().create_future())
        threads = self.cores.take() if self.cores is not None else None
        message = (*self._pack(batch.seq, items, options), threads)
        self._inflight = batch
        try:
            try:
                if message[2] is None:  # no room in shared memory: the pixels go through the pipe, off the loop
                    await asyncio.to_thread(self._conn.send, message)
                else:
                    self._conn.send(message)
            except OSError as exc:  # it died just now: _on_exit restarts it
                raise WorkerCrashedError(f"the model's worker process is gone ({exc})") from exc
            done, _ = await asyncio.wait({batch.future}, timeout=self.batch_timeout)
            if not done:
                log.error(
                    "worker %s: a batch of %d ran over %g s: killing it", self.name, len(items), self.batch_timeout
                )
                self._kill()
            rows = await batch.future
        finally:
            self._inflight = None
            if self.cores is not None:
                self.cores.give()
        return [outcome for _, outcome in rows]  # each image's Detections, or its own error

    def _pack(self, seq: int, items: Sequence[Item], options: Sequence[DetectOptions]) -> tuple:
        """The batch message: the items (encoded bytes or pixels) written into the shared block (or, without
        room, the items themselves)."""
        arrays = [np.frombuffer(it, np.uint8) if isinstance(it, bytes) else it for it in items]
        sizes = [a.nbytes for a in arrays]
        shm = self._shared(sum(sizes))
        if shm is None:
            return ("batch", seq, None, list(items), list(options))
        layout, offset = [], 0
        for img, size in zip(arrays, sizes, strict=True):
            view = np.ndarray(img.shape, np.uint8, buffer=shm.buf, offset=offset)
            view[...] = img
            del view
            layout.append((offset, img.shape))
            offset += size
        return ("batch", seq, shm.name, layout, list(options))

    def _shared(self, size: int) -> SharedMemory | None:
        """The worker's shared block, grown to hold ``size`` bytes; None if /dev/shm has no room for it (a
        write past a full tmpfs would kill the server with SIGBUS, so room is checked first)."""
        if self._shm is not None and self._shm.size >= size:
            return self._shm
        want = -(-size // _SHM_STEP) * _SHM_STEP
        try:
            if shutil.disk_usage("/dev/shm").free < want + _SHM_STEP:
                return None
            shm = SharedMemory(create=True, size=want)
        except OSError:
            return None
        self._release_shm()
        self._shm = shm
        return shm

    def _release_shm(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def _on_message(self) -> None:
        conn = self._conn
        try:
            while conn is not None and not conn.closed and conn.poll():
                self._handle(conn.recv())
        except (EOFError, OSError):  # the process is gone: _on_exit follows
            if conn is not None and not conn.closed:
                asyncio.get_running_loop().remove_reader(conn.fileno())

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        starting = self._starting if self._starting is not None and not self._starting.done() else None
        if kind == "ready" and starting is not None:
            starting.set_result(ModelInfo(ModelMeta.from_dict(message[1]), message[2]))
        elif kind == "failed" and starting is not None:
            starting.set_exception(ModelLoadError(message[1]))
        elif kind in ("done", "error") and self._inflight is not None and self._inflight.seq == message[1]:
            future = self._inflight.future
            if not future.done():
                if kind == "done":
                    future.set_result(message[2])
                else:
                    future.set_exception(RuntimeError(f"worker {self.name}: {message[2]}"))

    def _on_exit(self) -> None:
        """The process has ended: take its last messages, fail what it held, restart it unless stopping."""
        proc = self._proc
        if proc is not None:
            asyncio.get_running_loop().remove_reader(proc.sentinel)  # once
        self._on_message()
        code = proc.exitcode if proc is not None else None
        if proc is not None and code is None:
            proc.join(0.1)
            code = proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if self._starting is not None and not self._starting.done():  # start() cleans up and reports it
            self._starting.set_exception(ModelLoadError(f"worker {self.name} exited while loading ({how})"))
            return
        self._up = False
        self._forget_process()
        if self._inflight is not None and not self._inflight.future.done():
            self._inflight.future.set_exception(
                WorkerCrashedError(f"the model's worker process died ({how}) while running this request")
            )
        if not self._stopping:
            log.error("worker %s (pid %s) died (%s): restarting it", self.name, self.pid, how)
            self._restart_task = asyncio.get_running_loop().create_task(self._restart(), name=f"restart-{self.name}")

    def _forget_process(self) -> None:
        """Stop watching the process and close its pipe."""
        loop = asyncio.get_running_loop()
        if self._proc is not None:
            loop.remove_reader(self._proc.sentinel)
        if self._conn is not None:
            if not self._conn.closed:
                loop.remove_reader(self._conn.fileno())
            self._conn.close()
        self._conn = None

    async def _reap(self, timeout: float = 5.0) -> None:
        """Make sure the current process is gone (killed if need be) and forgotten."""
        self._up = False
        self._forget_process()
        proc = self._proc
        if proc is not None:
            await asyncio.to_thread(proc.join, timeout)
            if proc.exitcode is None:
                self._kill()
                await asyncio.to_thread(proc.join, 5)

    async def _restart(self) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                await self.start()
            except (ModelLoadError, OSError) as exc:
                log.error("worker %s could not restart: %s; trying again in %g s", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart(self)
            return

    def _kill(self) -> None:
        if self._proc is not None and self._proc.exitcode is None:
            os.kill(self._proc.pid, signal.SIGKILL)

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the process to exit (after its current batch), kill it after ``timeout`` s; free the block."""
        self._stopping = True
        if self._restart_task is not None:
            self._restart_task.cancel()
            await asyncio.gather(self._restart_task, return_exceptions=True)
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(OSError):
                self._conn.send(("stop",))
        await self._reap(timeout)
        self._release_shm()
