"""Prometheus metrics, in a registry of the app's own (so several apps can live in one process)."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..serving.batcher import BatchStats
from ..serving.runners import Runner
from ..streams.health import PROBLEMS
from ..streams.manager import StreamManager

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("hm_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.request_seconds = Histogram(
            "hm_request_duration_seconds", "Request duration", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "hm_queue_wait_seconds",
            "Time a request waited for its batch",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "hm_inference_seconds",
            "Time one batch spent in its runner (decoding its images, then the model)",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "hm_batch_size",
            "Images per executed batch",
            ["model"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=r,
        )
        self.queue_depth = Gauge("hm_queue_depth", "Requests waiting for a batch", ["model"], registry=r)
        self.images = Counter("hm_images", "Images run through a detector", ["model"], registry=r)
        self.dropped = Counter(
            "hm_dropped_requests", "Requests dropped from the queue (timed out or disconnected)", ["model"], registry=r
        )
        self.images_per_second = Gauge(
            "hm_images_per_second", "Images per second over the last 10 s", ["model"], registry=r
        )
        self.decoded_pixels = Gauge("hm_decoded_pixels", "Decoded pixels held by requests in flight", registry=r)
        self.abandoned_decodes = Gauge(
            "hm_abandoned_decodes", "Decodes past their time budget whose threads are still running", registry=r
        )
        self.worker_images = Counter("hm_worker_images", "Images run by each worker", ["model", "worker"], registry=r)
        self.worker_busy = Counter(
            "hm_worker_busy_seconds", "Time each worker spent running batches", ["model", "worker"], registry=r
        )
        self.worker_up = Gauge(
            "hm_worker_up", "1 while a worker is loaded and taking batches", ["model", "worker"], registry=r
        )
        self.worker_restarts = Counter(
            "hm_worker_restarts", "Worker processes restarted after dying", ["model", "worker"], registry=r
        )
        self._recent: dict[str, deque[tuple[float, int]]] = {}

    def worker_restarted(self, worker: Runner) -> None:
        """Called by a worker process once it is back after dying."""
        self.worker_restarts.labels(worker.model, worker.name).inc()

    def batch_observer(self, model: str):
        """A callback for :class:`DynamicBatcher` that records one model's batches."""
        recent = self._recent.setdefault(model, deque())

        def observe(stats: BatchStats) -> None:
            if stats.dropped:
                self.dropped.labels(model).inc(stats.dropped)
            if not stats.size:
                return
            self.batch_size.labels(model).observe(stats.size)
            self.inference.labels(model).observe(stats.inference)
            for wait in stats.queue_waits:
                self.queue_wait.labels(model).observe(wait)
            self.images.labels(model).inc(stats.size)
            self.worker_images.labels(model, stats.runner).inc(stats.size)
            self.worker_busy.labels(model, stats.runner).inc(stats.inference)
            now = time.monotonic()
            recent.append((now, stats.size))
            self._update_rate(model, now)

        return observe

    def _update_rate(self, model: str, now: float, window: float = 10.0) -> None:
        recent = self._recent.setdefault(model, deque())
        while recent and recent[0][0] < now - window:
            recent.popleft()
        self.images_per_second.labels(model).set(sum(n for _, n in recent) / window)

    def render(
        self,
        depths: dict[str, int],
        decoded_pixels: int = 0,
        abandoned_decodes: int = 0,
        workers: dict[str, list[dict]] | None = None,
    ) -> bytes:
        """The exposition text; ``workers``: per model, :meth:`ModelHost.workers`."""
        for model, entries in (workers or {}).items():
            for w in entries:
                self.worker_up.labels(model, w["name"]).set(1 if w["up"] else 0)
        self.decoded_pixels.set(decoded_pixels)
        self.abandoned_decodes.set(abandoned_decodes)
        now = time.monotonic()
        for model, depth in depths.items():
            self.queue_depth.labels(model).set(depth)
            self._update_rate(model, now)
        return generate_latest(self.registry)


class StreamCollector:
    """Prometheus metrics per stream and per delivery target, read from the manager at scrape time."""

    def __init__(self, manager: StreamManager) -> None:
        self.manager = manager

    def collect(self):
        streams = self.manager.describe()
        counters = {
            "frames_in": "Frames decoded from the source",
            "processed": "Frames run through the detector",
            "dropped": "Live frames replaced by a newer one before they were processed",
            "reconnects": "Times the source was reopened by the watchdog",
            "alarms": "Alarms raised",
            "detect_failures": "Frames the detector refused (busy, restarting)",
            "still": "Frames without motion, not detected (the last detections kept)",
        }
        for key, doc in counters.items():
            family = CounterMetricFamily(f"hm_stream_{key}", doc, labels=["stream"])
            for s in streams:
                family.add_metric([s["name"]], s[key])
            yield family
        latency = GaugeMetricFamily(
            "hm_stream_latency_seconds", "Frame decoded → detections, median", labels=["stream"]
        )
        fps = GaugeMetricFamily("hm_stream_fps", "Frames processed per second", labels=["stream"])
        for s in streams:
            latency.add_metric([s["name"]], (s["latency_ms_p50"] or 0) / 1000)
            fps.add_metric([s["name"]], s["fps_processed"])
        yield latency
        yield fps
        problem = GaugeMetricFamily(
            "hm_camera_problem",
            "1 while the camera has this problem (offline, frozen, covered)",
            labels=["stream", "problem"],
        )
        for s in streams:
            for name in PROBLEMS:
                problem.add_metric([s["name"], name], float(name in s["problems"]))
        yield problem
        armed = GaugeMetricFamily("hm_stream_armed", "1 while the stream's alarms are delivered", labels=["stream"])
        for s in streams:
            armed.add_metric([s["name"]], float(s["armed"]))
        yield armed
        if self.manager.store is not None:
            unreviewed = GaugeMetricFamily("hm_unreviewed_alarms", "Alarms nobody has reviewed yet")
            unreviewed.add_metric([], self.manager.store.unreviewed())
            yield unreviewed
        stats = self.manager.delivery()
        delivered = CounterMetricFamily("hm_deliveries", "Event messages delivered", labels=["sink"])
        failed = CounterMetricFamily("hm_delivery_failures", "Failed delivery attempts", labels=["sink"])
        depth = GaugeMetricFamily("hm_outbox_depth", "Messages waiting for delivery", labels=["sink"])
        dropped = CounterMetricFamily(
            "hm_outbox_dropped", "Messages removed before delivery to keep events within events-max-mb", labels=["sink"]
        )
        for sink, st in stats.items():
            delivered.add_metric([sink], st["delivered"])
            failed.add_metric([sink], st["failures"])
            depth.add_metric([sink], st["depth"])
            dropped.add_metric([sink], st.get("dropped", 0))
        yield from (delivered, failed, depth, dropped)
