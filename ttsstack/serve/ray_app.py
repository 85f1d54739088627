"""Ray Serve: each addon a deployment of replicas behind Ray's HTTP proxy, speaking the same OpenAI endpoint.

Every replica loads its addon on its backend and runs ttsstack's own
application (:func:`~ttsstack.serve.create_app` over that one voice) as the
deployment's ASGI ingress, so a replica answers exactly as ``ttsstack serve``
does: the same request schema, streaming, errors, per-replica admission
(``max_concurrent`` syntheses, ``max_queue`` waiting, then ``429``), input and
body limits, API key, ``/readyz`` and ``/metrics``. Ray adds, per deployment:

- replicas placed by resources: ``cpus`` each, or ``gpus`` (one per GPU), or
  ``neuron_cores`` (a NeuronCore range per replica, Ray's ``neuron_cores`` resource);
- ``max_ongoing_requests = max_concurrent + max_queue`` per replica, so Ray
  sends no replica more than it admits; Ray's own queue in front of them
  (``max_queued_requests``, beyond which it answers ``503``) holds as many as
  all replicas admit, since requests that arrive together wait there while a
  replica is picked: a smaller queue answered ``503`` to one of four requests
  sent at once to two idle replicas;
- autoscaling on ongoing requests (``target_ongoing_requests = max_concurrent``)
  between ``replicas`` and ``max_replicas``.

One addon is served at ``/`` (``POST /v1/audio/speech``, as without Ray);
several are served each under its model name (``/<model>/v1/audio/speech``:
an OpenAI client's ``base_url`` is ``http://HOST:PORT/<model>/v1``), as Ray's
proxy routes by path prefix, not by body.

Entry points: ``ttsstack serve --ray`` (:func:`run_on_ray`), or Ray's own
``serve.run(addon_application(...))`` and ``serve run
ttsstack.serve.ray_app:build addon=DIR backend=cpu replicas=2``.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..loader import load, load_addon
from ..runtime import RuntimeOptions
from .config import AddonSource, Limits, parse_addon_source


@dataclass(frozen=True)
class Placement:
    """How many replicas of each addon and what each holds.

    ``replicas`` run from the start; with ``max_replicas`` above it, Ray scales
    between the two on ongoing requests. Each replica reserves ``cpus`` CPUs
    and ``gpus`` GPUs or ``neuron_cores`` NeuronCores (Ray resources), and runs
    ``threads`` PyTorch intra-op threads.
    """

    replicas: int = 1
    max_replicas: int | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    neuron_cores: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= replicas ({self.replicas})")
        if self.cpus < 0 or self.gpus < 0 or self.neuron_cores < 0 or self.threads < 1:
            raise ValueError("cpus, gpus and neuron_cores must be >= 0 and threads >= 1")

    def actor_options(self) -> dict[str, Any]:
        """Ray's ``ray_actor_options`` of one replica."""
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.neuron_cores:
            options["resources"] = {"neuron_cores": self.neuron_cores}
        return options


class AddonReplica:
    """One replica: an addon loaded on its backend, warmed up, then served by ttsstack's application."""

    def __init__(self, folder: str, backend: str, limits: Limits, api_key: str | None, options: dict, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.voice = load(folder, backend=backend, options=RuntimeOptions(**options))  # warm before Ray routes to it
        self.limits = limits
        self.api_key = api_key

    def __serve_build_asgi_app__(self):
        """The ASGI application of this replica (Ray calls it once the constructor has run); its
        responses name the replica in ``X-Ttsstack-Replica``, to tell which one answered."""
        from ray import serve

        from .app import create_app

        app = create_app([self.voice], self.limits, self.api_key)
        app.add_middleware(NameReplica, replica=serve.get_replica_context().replica_id.unique_id)
        return app


class NameReplica:
    """ASGI middleware adding ``X-Ttsstack-Replica: <replica>`` to every HTTP response."""

    def __init__(self, app, replica: str):
        self.app = app
        self.header = (b"x-ttsstack-replica", replica.encode())

    async def __call__(self, scope, receive, send) -> None:
        async def named_send(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named_send if scope["type"] == "http" else send)


def addon_application(source: AddonSource | str, limits: Limits | None = None, placement: Placement | None = None,
                      options: RuntimeOptions | None = None, api_key: str | None = None):
    """The Ray Serve application of one addon: its deployment (named after the addon) bound to its arguments."""
    from ray import serve

    if isinstance(source, str):
        source = parse_addon_source(source)
    limits, placement, options = limits or Limits(), placement or Placement(), options or RuntimeOptions()
    name = load_addon(source.folder).spec.name
    deployment = serve.deployment(serve.ingress()(AddonReplica), name=name, **deployment_options(limits, placement))
    return deployment.bind(str(source.folder), source.backend, limits, api_key, asdict(options), placement.threads)


def deployment_options(limits: Limits, placement: Placement) -> dict[str, Any]:
    """The options of an addon's ``serve.deployment``: placement, replica count or autoscaling, and the
    request bounds (each replica takes what it admits, Ray's queue what all of them admit; module docstring)."""
    admitted = limits.max_concurrent + limits.max_queue
    options: dict[str, Any] = {
        "ray_actor_options": placement.actor_options(),
        "max_ongoing_requests": admitted,
        "max_queued_requests": admitted * (placement.max_replicas or placement.replicas),
        "num_replicas": placement.replicas,
    }
    if placement.max_replicas and placement.max_replicas > placement.replicas:
        del options["num_replicas"]
        options["autoscaling_config"] = {"min_replicas": placement.replicas, "max_replicas": placement.max_replicas,
                                         "target_ongoing_requests": limits.max_concurrent}
    return options


def route_prefixes(names: Sequence[str]) -> dict[str, str]:
    """Where each addon is served: ``/`` for a single one, ``/<name>`` for each of several."""
    return {names[0]: "/"} if len(names) == 1 else {name: f"/{name}" for name in names}


def deploy(sources: Sequence[AddonSource], limits: Limits, placement: Placement, options: RuntimeOptions,
           api_key: str | None = None, blocking: bool = False) -> dict[str, str]:
    """Run every addon as its own Serve application on the connected Ray cluster; returns name -> route prefix."""
    from ray import serve

    names = [load_addon(s.folder).spec.name for s in sources]
    prefixes = route_prefixes(names)
    for name, source in zip(names, sources):
        app = addon_application(source, limits, placement, options, api_key)
        serve.run(app, name=name, route_prefix=prefixes[name], blocking=blocking)
    return prefixes


def run_on_ray(sources: Sequence[AddonSource], limits: Limits, placement: Placement, options: RuntimeOptions,
               api_key: str | None, host: str, port: int, address: str | None) -> None:
    """``ttsstack serve --ray``: join (``address``) or start a Ray cluster, start Serve's HTTP proxy on
    ``host:port``, deploy every addon, and serve until SIGINT or SIGTERM; then shut the applications down."""
    import ray
    from ray import serve

    signal.signal(signal.SIGTERM, _interrupt)

    ray.init(address=address)
    serve.start(http_options={"host": host, "port": port, "keep_alive_timeout_s": int(limits.keep_alive_s)})
    prefixes = deploy(sources, limits, placement, options, api_key)
    for name, prefix in prefixes.items():
        print(f"serving {name} on http://{host}:{port}{prefix.rstrip('/')}/v1/audio/speech through Ray Serve", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C, so that the applications are shut down on either."""
    raise KeyboardInterrupt


def build(args: dict[str, str]):
    """Ray's application builder, for ``serve run ttsstack.serve.ray_app:build addon=DIR [backend=cpu] [replicas=N]
    [max_replicas=N] [cpus=C] [gpus=G] [neuron_cores=N]`` and Serve config files (``import_path``)."""
    known = {"addon", "backend", "replicas", "max_replicas", "cpus", "gpus", "neuron_cores"}
    if "addon" not in args or set(args) - known:
        raise ValueError(f"arguments: addon=DIR is required; known: {', '.join(sorted(known))}; got {', '.join(args)}")
    placement = Placement(
        replicas=int(args.get("replicas", 1)), max_replicas=int(args["max_replicas"]) if "max_replicas" in args else None,
        cpus=float(args.get("cpus", 1)), gpus=float(args.get("gpus", 0)), neuron_cores=int(args.get("neuron_cores", 0)),
    )
    return addon_application(AddonSource(Path(args["addon"]), args.get("backend", "cpu")), placement=placement)
