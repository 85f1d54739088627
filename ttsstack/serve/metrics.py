"""Prometheus metrics of one server, in a registry of its own (several apps may share a process).

- ``ttsstack_requests_total{model, status}``: speech requests by the HTTP status
  they were answered with (``model`` is empty when the request named no loaded one).
- ``ttsstack_requests_total{model, status}`` counts a request dropped before
  any answer (its client hung up while it was queued) as status ``499``.
- ``ttsstack_streams_total{model, outcome}``: audio streams that ``completed``,
  were ``cancelled`` by the client hanging up (counted as soon as it is seen),
  were ``stalled`` (cut off after the client read nothing for the send
  timeout) or ``failed`` inside the synthesis.
- ``ttsstack_time_to_first_audio_seconds{model}``: from the request reaching
  the route (queue wait included) to its first audio chunk being ready.
- ``ttsstack_rtf{model}``: real-time factor as the field uses it, seconds of
  synthesis (queue wait excluded) per second of audio, per completed stream;
  lower is better, below 1 is faster than real time.
- ``ttsstack_speed_multiple{model}``: its inverse, seconds of audio per second
  of synthesis ("4x faster than real time"), per completed stream.
- ``ttsstack_real_time_factor{model}``: DEPRECATED, to be removed in the next
  release: the same values as ``ttsstack_speed_multiple`` under a name that
  reads as the usual RTF but is its inverse. Dashboards move to ``ttsstack_rtf``.
- ``ttsstack_active_streams{model}``, ``ttsstack_queue_depth{model}``: live
  syntheses and requests waiting for a slot.
- ``ttsstack_batched_calls_total{model, network, size}``: with ``serve
  --batch``, the calls of each ``batch: true`` network by how many streams'
  calls they ran at once (``size`` 1: a call alone), read from the runners'
  ``batches`` counters when scraped.
- ``process_*``: the server's resident memory, CPU time, open files (Linux).
"""

from __future__ import annotations

from typing import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest

from ..runtime import Voice
from ..runtime.batching import BatchingRunner

from .concurrency import AdmissionGate

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :meth:`ServerMetrics.render`."""

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
_SPEED_MULTIPLE_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
_RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)


class BatchSizes:
    """A collector of ``ttsstack_batched_calls_total``: each batching runner's calls per batch size, when scraped."""

    def __init__(self, voices: Mapping[str, Voice]):
        self.voices = voices

    def collect(self):
        """One sample per model, ``batch: true`` network and batch size run so far."""
        family = CounterMetricFamily(
            "ttsstack_batched_calls", "Calls of batch: true networks by the streams they ran at once (serve --batch).",
            labels=["model", "network", "size"],
        )
        for model, voice in self.voices.items():
            for network, runner in voice.runners.items():
                if isinstance(runner, BatchingRunner):
                    for size, calls in sorted(dict(runner.batches).items()):
                        family.add_metric([model, network, str(size)], calls)
        yield family


class ServerMetrics:
    """The metrics above; gauges read the admission gates' live counts when scraped, batch sizes the voices' runners."""

    def __init__(self, gates: Mapping[str, AdmissionGate], voices: Mapping[str, Voice] | None = None):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(BatchSizes(voices or {}))
        self.requests = Counter(
            "ttsstack_requests", "Speech requests by answered HTTP status.", ["model", "status"], registry=self.registry
        )
        self.streams = Counter(
            "ttsstack_streams", "Audio streams by outcome: completed, cancelled, stalled, failed.", ["model", "outcome"],
            registry=self.registry,
        )
        self.time_to_first_audio = Histogram(
            "ttsstack_time_to_first_audio_seconds", "Request arrival to first audio chunk ready, queue wait included.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.rtf = Histogram(
            "ttsstack_rtf", "Real-time factor: seconds of synthesis per second of audio (lower is better), "
            "per completed stream.", ["model"], buckets=_RTF_BUCKETS, registry=self.registry,
        )
        self.speed_multiple = Histogram(
            "ttsstack_speed_multiple", "Seconds of audio per second of synthesis (times faster than real time), "
            "per completed stream.", ["model"], buckets=_SPEED_MULTIPLE_BUCKETS, registry=self.registry,
        )
        self.deprecated_real_time_factor = Histogram(
            "ttsstack_real_time_factor", "DEPRECATED (removed in the next release; use ttsstack_rtf or "
            "ttsstack_speed_multiple): seconds of audio per second of synthesis, per completed stream.",
            ["model"], buckets=_SPEED_MULTIPLE_BUCKETS, registry=self.registry,
        )
        active = Gauge("ttsstack_active_streams", "Syntheses running.", ["model"], registry=self.registry)
        queued = Gauge("ttsstack_queue_depth", "Requests waiting for a synthesis slot.", ["model"], registry=self.registry)
        for name, gate in gates.items():
            active.labels(name).set_function(lambda gate=gate: gate.active)
            queued.labels(name).set_function(lambda gate=gate: gate.waiting)

    def observe_speed(self, model: str, audio_s: float, synthesis_s: float) -> None:
        """Record one completed stream's speed: its RTF, speed multiple and the deprecated metric."""
        if audio_s <= 0 or synthesis_s <= 0:
            return
        self.rtf.labels(model).observe(synthesis_s / audio_s)
        self.speed_multiple.labels(model).observe(audio_s / synthesis_s)
        self.deprecated_real_time_factor.labels(model).observe(audio_s / synthesis_s)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
