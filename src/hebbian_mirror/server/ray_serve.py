"""The server as a Ray Serve application: one deployment per model (the detector and its dynamic batcher in each
replica) and the FastAPI app as the ingress, so every API family answers as it does without Ray.

``hebbian-mirror serve --ray`` runs it on a local Ray cluster (or joins one with ``--ray-address``);
``serve deploy deploy/serve.yaml`` deploys :func:`app_builder` on a running cluster (KubeRay's ``RayService``
takes the same file). Replicas and autoscaling come from :class:`~hebbian_mirror.config.Settings`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle

from ..config import Settings, load_settings
from ..detection import DetectOptions
from ..errors import ConfigError
from ..serving.batcher import DynamicBatcher, Result
from ..serving.engine import ModelHost
from ..serving.remote import RemoteBatcher
from ..serving.runners import Item, ModelInfo, ThreadRunner, load_and_warm
from .app import create_app

log = logging.getLogger(__name__)
APP_NAME = "hebbian-mirror"


class ModelReplica:
    """One replica of a served model: the detector, warmed, and the batcher that groups the images sent to
    this replica into batches (so ``max_ongoing_requests`` must be at least the batch size)."""

    def __init__(self, name: str, source: str, settings: Settings) -> None:
        self.name, self.settings = name, settings
        detector = load_and_warm(source, settings, settings, settings.max_batch_size)
        self.runner = ThreadRunner(detector, name, settings.max_pixels, settings.decode_timeout)
        self.tag = f"{serve.get_replica_context().replica_id.unique_id}@{os.getpid()}"
        self.batcher: DynamicBatcher | None = None

    def info(self) -> ModelInfo:
        detector = self.runner.detector
        return ModelInfo(detector.meta, detector.info())

    async def detect(self, item: Item, options: DetectOptions) -> Result:
        if self.batcher is None:  # made on the replica's event loop
            s = self.settings
            self.batcher = DynamicBatcher(self.runner, s.max_batch_size, s.max_batch_delay_ms / 1000, s.max_queue)
            self.batcher.start()
        result = await self.batcher.detect(item, options, self.settings.request_timeout)
        return dataclasses.replace(result, worker=self.tag)


@serve.ingress()
class Ingress:
    """The HTTP app; its models are the model deployments' handles."""

    def __init__(self, settings: Settings, models: dict[str, DeploymentHandle]) -> None:
        self.settings, self.models = settings, models

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.settings, connect=self._connect)

    async def _connect(self, host: ModelHost) -> tuple[RemoteBatcher, ModelInfo]:
        handle = self.models[host.name]
        info = await handle.info.remote()

        async def call(item: Item, options: DetectOptions) -> Result:
            return await handle.detect.remote(item, options)

        lost = (RayActorError,)  # the replica died holding the request: send it to another
        return RemoteBatcher(host.name, call, self.settings.max_queue, lost), info


def model_options(settings: Settings) -> dict[str, Any]:
    """Deployment options of a model: replicas or autoscaling, concurrency, CPUs, health checks."""
    s = settings
    ongoing = s.ray_max_ongoing_requests or 2 * s.max_batch_size
    if ongoing < s.max_batch_size:
        raise ConfigError(
            f"ray_max_ongoing_requests ({ongoing}) must be at least max_batch_size ({s.max_batch_size}): a replica "
            "never holds more images than that, so its batches could never fill"
        )
    options: dict[str, Any] = {
        "max_ongoing_requests": ongoing,
        "ray_actor_options": {"num_cpus": s.ray_cpus_per_replica, "num_gpus": s.ray_gpus_per_replica},
        "health_check_period_s": 2.0,
        "graceful_shutdown_timeout_s": s.request_timeout,
    }
    if s.ray_min_replicas is not None or s.ray_max_replicas is not None:
        low = s.ray_min_replicas if s.ray_min_replicas is not None else 1
        high = s.ray_max_replicas if s.ray_max_replicas is not None else max(low, s.ray_replicas)
        if high < max(low, 1):
            raise ConfigError(f"ray_max_replicas ({high}) is below ray_min_replicas ({low})")
        options["autoscaling_config"] = {
            "min_replicas": low,
            "initial_replicas": min(max(low, 1), high),
            "max_replicas": high,
            "target_ongoing_requests": s.ray_target_ongoing_requests,
        }
    else:
        options["num_replicas"] = s.ray_replicas
    return options


def build(settings: Settings) -> serve.Application:
    """The application: a deployment per served model, bound into the ingress."""
    options = model_options(settings)
    models = {
        m.name: serve.deployment(ModelReplica)
        .options(name=f"model-{m.name}", **options)
        .bind(m.name, m.source, settings)
        for m in settings.served_models
    }
    ingress = serve.deployment(Ingress).options(
        name="api", max_ongoing_requests=settings.max_requests, ray_actor_options={"num_cpus": 0}
    )
    return ingress.bind(settings, models)


def app_builder(args: dict[str, Any]) -> serve.Application:
    """``import_path`` of a Serve config file: ``args`` are settings (as in the TOML file), over the
    environment's ``HEBBIAN_MIRROR_*``."""
    return build(load_settings(**(args or {})))


def run(settings: Settings) -> None:
    """``serve --ray``: the application on a local Ray cluster (or the one at ``ray_address``), serving HTTP on
    ``host:port`` until SIGINT / SIGTERM; then the application is deleted (and a local cluster stopped)."""
    application = build(settings)  # a bad option stops us before Ray starts
    local = settings.ray_address is None
    ray.init(
        address=settings.ray_address,
        num_cpus=settings.ray_num_cpus if local else None,
        include_dashboard=False,
        configure_logging=True,
        logging_level=settings.log_level.upper(),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
        log.info("Ray Serve application %s running on http://%s:%d", APP_NAME, settings.host, settings.port)
        print(f"Serving through Ray Serve on http://{settings.host}:{settings.port} (Ctrl-C stops)", flush=True)
        stop.wait()
    finally:
        log.info("stopping the Ray Serve application (requests in progress finish first)")
        # bounded: after Ctrl-C in a terminal the local cluster's own processes got SIGINT too and may be gone
        _bounded(serve.shutdown if local else lambda: serve.delete(APP_NAME), settings.request_timeout + 15)
        if local:
            ray.shutdown()  # stops the processes this local cluster started


def _bounded(fn: Any, timeout: float) -> None:
    """``fn()`` in a daemon thread, given up after ``timeout`` seconds (with a warning)."""
    worker = threading.Thread(target=fn, daemon=True, name="ray-stop")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning("Ray Serve did not stop within %g s; going on", timeout)
