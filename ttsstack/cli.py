"""The ttsstack command: compile, synthesize, inspect, parity and serve text-to-speech addons.

Command-line conventions (the same in the benchmarks): list flags have a
singular name, may be repeated, and each value may be a comma list
(--backend cpu,onnx is --backend cpu --backend onnx); every option's help
says its default; speed is shown as RTF (compute time / audio time, lower is
better) with the speed multiple beside it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from . import backends  # noqa: F401  (registration)
from .addon import BATCH, MAX_BATCH, AddonError, load_addon
from .audio import audio_format_for, write_audio
from .backends.base import FP32, PRECISIONS
from .cliflags import HelpFormatter, ListFlag, add_deprecated_alias, describe_rtf
from .compiler.driver import ALL, CompileError, compile_addon
from .compiler.manifest import MANIFEST_FILE, read_manifest
from .loader import load
from .outputs import prepare_output_file
from .parity import DEFAULT_TEXTS, check_parity
from .plugins import load_plugins
from .runtime.builder import RuntimeOptions, plan_stack
from .runtime.registry import BACKENDS, VOCODERS, RegistryError

DEMO_ADDON = Path(__file__).resolve().parent / "demo_addon"
"""The bundled demo addon (``addons/fastpitch-demo/addon``, shipped in the package as ``ttsstack/demo_addon``)."""
DEMO_TEXT = "The quick brown fox jumps over the lazy dog. Streaming speech starts before the sentence ends."
DEFAULT_OUTPUT = Path("speech.wav")


def _buckets(text: str) -> dict[str, list[int]]:
    """Parse ``T_text=32,64,128 T_frames=64`` style overrides."""
    name, _, sizes = text.partition("=")
    try:
        return {name: [int(s) for s in sizes.split(",") if s]}
    except ValueError:
        raise argparse.ArgumentTypeError(f"--buckets: expected NAME=INT,INT,... got {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _batch(text: str) -> int:
    value = _positive(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_BATCH} streams per batched call, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text}")
    return value


def _serve_limits_defaults():
    """The server's default limits, for help texts (without importing the server's dependencies)."""
    from .serve import Limits

    return Limits()


def cmd_compile(args: argparse.Namespace) -> int:
    """Compile an addon for one or more backends."""
    names = args.backend
    buckets = {k: v for item in args.buckets for k, v in item.items()}
    if ALL in names:
        for name in BACKENDS.names():
            reason = BACKENDS.get(name).unavailable_reason()
            if reason:
                print(f"--backend all: skipping {name}: {reason}", file=sys.stderr)
            elif name != "eager" and args.precision not in BACKENDS.get(name).precisions:
                print(f"--backend all: skipping {name}: it does not compile at precision {args.precision}", file=sys.stderr)
    try:
        report = compile_addon(args.addon, args.output, names, buckets or None, progress=not args.quiet, precision=args.precision)
    except CompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for network, how in report.streaming.items():
        print(f"{network}: streams by {how}")
    if report.reused and not report.compiled:
        print(f"{args.output}: up to date ({len(report.reused)} artifacts unchanged), nothing to compile")
    else:
        print(f"{args.output}: compiled {len(report.compiled)} artifacts, reused {len(report.reused)}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    """Synthesize text to an audio file (and optionally the mel), printing latency and RTF."""
    if args.text is None:
        args.text = DEMO_TEXT
        print(f"no --text given: speaking the demo sentence {DEMO_TEXT!r}", file=sys.stderr)
    if args.output is None:
        args.output = DEFAULT_OUTPUT
        print(f"no -o given: writing {DEFAULT_OUTPUT}", file=sys.stderr)
    try:
        audio_format_for(args.output)  # an unknown suffix is refused before any work
    except ValueError as exc:
        raise ValueError(f"-o {exc}") from None
    if args.mel_out is not None and args.mel_out.suffix != ".npy":
        raise ValueError(f"--mel-out {args.mel_out}: the mel is saved as a NumPy .npy file; give a name ending in .npy")
    for flag, path in (("-o", args.output), ("--mel-out", args.mel_out)):
        if path is not None and (created := prepare_output_file(path, flag)) is not None:
            print(f"created folder {created} for {flag} {path}", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    voice = load(args.addon, backend=args.backend, options=RuntimeOptions(
        args.chunk_frames, args.first_chunk_frames, vocoder=args.vocoder, vocoder_thread=args.vocoder_thread,
        stateful_vocoder=args.stateful_vocoder))
    loaded = time.perf_counter()
    result = voice.synthesize_timed(args.text, speed=args.speed)
    write_audio(args.output, result.audio, voice.sample_rate)
    if args.mel_out:
        np.save(args.mel_out, result.mel.astype(np.float32))
    seconds = len(result.audio) / voice.sample_rate
    where = BACKENDS.get(args.backend)().placement
    print(f"wrote {args.output}: {seconds:.2f} s of audio at {voice.sample_rate} Hz "
          f"({args.backend} backend on {where}, {torch.get_num_threads()} torch thread(s))")
    if args.mel_out:
        print(f"wrote {args.mel_out}: mel float32 {list(result.mel.shape)} [frames, n_mels]")
    print(
        f"load {loaded - start:.2f} s | first mel chunk {result.first_mel_s * 1000:.0f} ms | "
        f"first audio chunk {result.first_audio_s * 1000:.0f} ms | total {result.total_s:.2f} s | "
        f"{describe_rtf(result.total_s, seconds)}"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve addons over HTTP (each on its own backend) until SIGTERM/SIGINT, then shut down gracefully."""
    try:
        from .serve import Limits, create_app, parse_addon_source, require_unique_names
        from .serve.config import concurrency_for_batch, threads_per_call
        from .serve.server import run_server, server_config
    except ImportError as exc:
        raise RuntimeError(f"serving needs the 'serve' extra: pip install 'ttsstack[serve]' ({exc})") from None
    max_concurrent = concurrency_for_batch(args.batch, args.max_concurrent)
    sources = [parse_addon_source(text) for text in args.addon or [str(DEMO_ADDON)]]
    require_unique_names([(load_addon(s.folder).spec.name, f"--addon {s}") for s in sources])
    limits = Limits(
        max_concurrent=max_concurrent, max_queue=args.max_queue, max_input_chars=args.max_input_chars,
        max_body_bytes=args.max_body_bytes, retry_after_s=args.retry_after, send_timeout_s=args.send_timeout,
        header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout, max_header_bytes=args.max_header_bytes,
        keep_alive_s=args.keep_alive, max_connections=args.max_connections, shutdown_grace_s=args.shutdown_grace,
        ws_idle_timeout_s=args.ws_idle_timeout, ws_flush_after_s=args.ws_flush_after,
    )
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    warning = open_access_warning(args.host, api_key)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    options = RuntimeOptions(
        args.chunk_frames, args.first_chunk_frames, vocoder=args.vocoder, batch=args.batch, vocoder_thread=args.vocoder_thread,
        stateful_vocoder=args.stateful_vocoder,
    )
    if args.ray:
        return _serve_on_ray(args, sources, limits, options, api_key)
    streams = max_concurrent * len(sources)
    threads = args.threads or threads_per_call(os.cpu_count() or 1, max_concurrent, args.batch, len(sources))
    torch.set_num_threads(threads)
    batching = f", the calls of up to {args.batch} as one batch (batch: true networks)" if args.batch > 1 else ""
    print(f"{threads} intra-op thread(s) per call, up to {streams} streams at once{batching}", flush=True)
    voices = []
    for source in sources:
        voice = load(source.folder, backend=source.backend, options=options, warmup=False)  # warmed up by the app
        print(f"loaded {voice.spec.name} ({source.backend} backend) from {source.folder}", flush=True)
        voices.append(voice)
    config = server_config(create_app(voices, limits, api_key), limits, args.host, args.port, args.log_level)
    sock = config.bind_socket()
    sock.listen(config.backlog)  # from here a client that connects waits in the backlog until the app is up, never refused
    host, port = sock.getsockname()[:2]
    print(f"serving {', '.join(v.spec.name for v in voices)} on http://{host}:{port} (POST /v1/audio/speech)", flush=True)
    run_server(config, [sock])
    return 0


def _serve_on_ray(args: argparse.Namespace, sources, limits, options: RuntimeOptions, api_key: str | None) -> int:
    """``serve --ray``: each addon a Ray Serve deployment of replicas behind Ray's HTTP proxy."""
    try:
        from .serve.ray_app import Placement, run_on_ray
    except ImportError as exc:
        raise RuntimeError(f"serving on Ray needs the 'ray' extra: pip install 'ttsstack[ray]' ({exc})") from None
    placement = Placement(replicas=args.replicas, max_replicas=args.max_replicas, cpus=args.replica_cpus,
                          gpus=args.replica_gpus, neuron_cores=args.replica_neuron_cores, threads=args.threads or 1)
    run_on_ray(sources, limits, placement, options, api_key, args.host, args.port, args.ray_address)
    return 0


API_KEY_ENV = "TTSSTACK_API_KEY"


def open_access_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a server that listens beyond this machine without an API key, else None."""
    if api_key or _is_loopback(host):
        return None
    return (f"serving on {host}, beyond this machine, without an API key: anyone who can reach it may use it; "
            f"set {API_KEY_ENV} (or --api-key)")


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print an addon's networks, dims, block tree and (when compiled) artifacts."""
    addon = load_addon(args.addon)
    spec = addon.spec
    print(f"addon {spec.name} (format {spec.format}) at {addon.folder}")
    print(f"audio: {spec.audio.model_dump()}")
    print(f"frontend: {spec.frontend.type}")
    print("networks:")
    for name, net in spec.networks.items():
        ins = ", ".join(f"{n}{t.shape}:{t.dtype}" for n, t in net.inputs.items())
        outs = ", ".join(f"{n}{t.shape}:{t.dtype}" for n, t in net.outputs.items())
        print(f"  {name} [{net.role}, context {net.context}{', batch' if net.batch else ''}] {ins} -> {outs}")
    print("dims:")
    for name, dim in spec.dims.items():
        print(f"  {name}: max {dim.max}, buckets {dim.buckets or '-'}")
    if any(net.batch for net in spec.networks.values()):
        batch = spec.batch_dim
        print(f"  {BATCH} (axis 0 of batch networks): max {batch.max}, buckets {batch.buckets or [1]}")
    print("blocks:")
    stack = [(0, plan_stack(spec))]
    while stack:
        depth, block = stack.pop()
        print("  " + "  " * depth + block.describe())
        stack.extend((depth + 1, child) for child in reversed(block.children()))
    if (addon.folder / MANIFEST_FILE).is_file():
        manifest = read_manifest(addon.folder)
        print("artifacts:")
        for a in manifest.artifacts:
            size = manifest.artifact_path(addon.folder, a).stat().st_size / 1e6
            precision = a.settings.get("precision", "fp32")
            print(f"  {a.backend:12s} {a.network:20s} {a.bucket or 'dynamic'} {precision} {a.file} {size:.1f} MB sha256 {a.sha256[:12]}")
    else:
        print("artifacts: none (source addon; run ttsstack compile)")
    print("backends on this host:")
    for name in BACKENDS.names():
        cls = BACKENDS.get(name)
        reason = cls.unavailable_reason()
        print(f"  {name:12s} " + (f"unavailable: {reason}" if reason else f"runs on {cls().placement}"))
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    """Compare every backend of a compiled addon with the eager reference; exit 1 on any failure."""
    texts = DEFAULT_TEXTS
    if args.texts:
        texts = [line.strip() for line in args.texts.read_text().splitlines() if line.strip()]
        if not texts:
            print(f"error: {args.texts}: no text in the file (one text per line)", file=sys.stderr)
            return 2
    report = check_parity(args.compiled, args.backend or None, texts)
    print(report.table())
    return 0 if report.passed else 1


def _plugin_flag(parser: argparse.ArgumentParser) -> None:
    """``--plugin MODULE``: on every command that loads addons (it is acted on before parsing, in :func:`main`)."""
    parser.add_argument("--plugin", action=ListFlag, default=[], metavar="MODULE",
                        help="import MODULE first, so the blocks, frontends, vocoders or backends it registers "
                             "can be named by addons (repeatable; entry points of the installed "
                             "'ttsstack.plugins' group load too; default: none)")


def _chunk_flags(parser: argparse.ArgumentParser) -> None:
    """``--chunk-frames``, ``--first-chunk-frames`` (the decoder's chunk schedule), ``--vocoder``,
    ``--[no-]vocoder-thread`` and ``--[no-]stateful-vocoder``: ``RuntimeOptions``."""
    parser.add_argument("--chunk-frames", type=_positive, default=RuntimeOptions.chunk_frames, metavar="N",
                        help="largest mel chunk the decoder emits; chunks double from --first-chunk-frames up to it")
    parser.add_argument("--first-chunk-frames", type=_positive, default=RuntimeOptions.first_chunk_frames, metavar="N",
                        help="frames of the first mel chunk, before the lookahead of the blocks after it (sets the time to first audio)")
    parser.add_argument("--vocoder", default=None, metavar="TYPE",
                        help="vocoder type replacing the addon's `vocoder:` entry, e.g. GriffinLim for the demo "
                             f"without its vocoder network (registered: {', '.join(VOCODERS.names())}; "
                             "default: the addon's)")
    parser.add_argument("--vocoder-thread", action=argparse.BooleanOptionalAction, default=RuntimeOptions.vocoder_thread,
                        help="decode each stream's mel in a thread of its own, one chunk ahead of the vocoder, so the "
                             "two compute at once (the audio is the same; --no-vocoder-thread on a one-core host)")
    parser.add_argument("--stateful-vocoder", action=argparse.BooleanOptionalAction,
                        default=RuntimeOptions.stateful_vocoder,
                        help="stream a vocoder network through the stateful twin compile derived for it, vocoding "
                             "each frame once (the audio is the same; --no-stateful-vocoder: overlapping windows)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ttsstack", formatter_class=HelpFormatter, description=__doc__,
        epilog="Run 'ttsstack COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"ttsstack {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backends_help = f"backend(s) to compile for: {', '.join(BACKENDS.names())}, or {ALL} (repeatable or comma list)"

    def command(name: str, help: str) -> argparse.ArgumentParser:
        """A subcommand whose description repeats its one-line help as a sentence."""
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", formatter_class=HelpFormatter)

    p = command("compile", "compile an addon into artifacts for backends")
    p.add_argument("addon", type=Path, help="source addon folder (with addon.yaml)")
    p.add_argument("-o", "--output", type=Path, required=True, help="compiled addon folder to write (required)")
    p.add_argument("--backend", action=ListFlag, default=["cpu"], metavar="NAME", help=backends_help)
    p.add_argument("--buckets", action="append", type=_buckets, default=[], metavar="DIM=N,N,...",
                   help="override a dim's shape buckets, e.g. T_text=32,64,128 (repeat for several dims; "
                        "default: the addon's dims.<DIM>.buckets); batch=1,4 sets the batch sizes static backends "
                        "compile batch: true networks at (default: the addon's batch.buckets, else 1)")
    p.add_argument("--precision", choices=PRECISIONS, default=FP32,
                   help="arithmetic of the artifacts (inputs and outputs stay fp32): cpu offers fp32, bf16, fp16, "
                        "int8; onnx and onnx-static fp32, fp16, int8; neuron fp32, bf16, fp16; a backend that "
                        "cannot is refused; ttsstack parity reports the error against fp32")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _plugin_flag(p)
    p.set_defaults(func=cmd_compile)

    p = command("synthesize", "synthesize text to an audio file, printing latency and RTF")
    p.add_argument("--addon", type=Path, default=DEMO_ADDON,
                   help="compiled or source addon folder (default: the bundled fastpitch-demo)")
    p.add_argument("--backend", default="cpu", metavar="NAME", help=f"backend to run on: {', '.join(BACKENDS.names())}")
    p.add_argument("--text", default=None, help=f"text to speak (default: the demo sentence {DEMO_TEXT!r})")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help=f"audio file to write; its suffix picks the format: .wav, .flac, .ogg or .mp3; "
                        f"a missing folder is created (default: {DEFAULT_OUTPUT})")
    p.add_argument("--mel-out", type=Path, default=None, metavar="FILE.npy",
                   help="also save the mel as float32 .npy [frames, n_mels] (default: not saved)")
    p.add_argument("--speed", type=float, default=1.0, help="speaking rate: 2.0 speaks twice as fast")
    p.add_argument("--threads", type=_positive, default=None,
                   help=f"PyTorch intra-op threads (default: PyTorch's, {torch.get_num_threads()} here); "
                        "the README's latency numbers use 1")
    _chunk_flags(p)
    _plugin_flag(p)
    p.set_defaults(func=cmd_synthesize)

    limits = _serve_limits_defaults()
    p = command("serve", "serve addons over HTTP (OpenAI-compatible /v1/audio/speech)")
    p.add_argument("--addon", action="append", metavar="DIR[:BACKEND]",
                   help="addon to serve, on BACKEND (default cpu); repeat for several (default: the bundled demo)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on; 0 picks a free one")
    p.add_argument("--max-concurrent", type=_positive, default=None, metavar="N",
                   help=f"syntheses running at once per addon (default: {limits.max_concurrent}, or --batch's N "
                        f"when larger; with --batch N, at least N)")
    p.add_argument("--batch", type=_batch, default=1, metavar="N",
                   help="run the concurrent calls of up to N streams to an addon's `batch: true` networks as one "
                        f"batched call, N at most {MAX_BATCH}; raises the default --max-concurrent to N; see "
                        "docs/serving.md (default: 1, every call alone)")
    p.add_argument("--max-queue", type=_non_negative, default=limits.max_queue, metavar="N",
                   help="requests waiting per addon before 429")
    p.add_argument("--max-input-chars", type=_positive, default=limits.max_input_chars, metavar="N",
                   help="longest 'input' text of a request; longer is 413")
    p.add_argument("--max-body-bytes", type=_positive, default=limits.max_body_bytes, metavar="N",
                   help="largest request body; larger is 413 before it is parsed")
    p.add_argument("--retry-after", type=_positive, default=limits.retry_after_s, metavar="SECONDS",
                   help="Retry-After seconds of a 429")
    p.add_argument("--send-timeout", type=_seconds, default=limits.send_timeout_s, metavar="SECONDS",
                   help="cut a response whose client has read nothing for this long, freeing its slot "
                        f"(default {limits.send_timeout_s:g})")
    p.add_argument("--ws-idle-timeout", type=_seconds, default=limits.ws_idle_timeout_s, metavar="SECONDS",
                   help="close a speech WebSocket that sent nothing this long while nothing was being spoken "
                        f"(default {limits.ws_idle_timeout_s:g})")
    p.add_argument("--ws-flush-after", type=_seconds, default=limits.ws_flush_after_s, metavar="SECONDS",
                   help="on a speech WebSocket, speak text pending without a clause end after this long without "
                        f"a fragment (default {limits.ws_flush_after_s:g})")
    p.add_argument("--header-timeout", type=_seconds, default=limits.header_timeout_s, metavar="SECONDS",
                   help="close a connection whose request headers are not complete this long after it connected "
                        f"or its previous response ended (default {limits.header_timeout_s:g})")
    p.add_argument("--body-timeout", type=_seconds, default=limits.body_timeout_s, metavar="SECONDS",
                   help=f"answer 408 to a request body not complete this long after its headers (default {limits.body_timeout_s:g})")
    p.add_argument("--max-header-bytes", type=_positive, default=limits.max_header_bytes,
                   help=f"most bytes of unfinished request line and headers held, more is 400 (default {limits.max_header_bytes})")
    p.add_argument("--keep-alive", type=_seconds, default=limits.keep_alive_s, metavar="SECONDS",
                   help=f"close idle keep-alive connections after this (default {limits.keep_alive_s:g})")
    p.add_argument("--max-connections", type=_positive, default=limits.max_connections,
                   help=f"open connections plus running requests; a request beyond is 503 (default {limits.max_connections})")
    p.add_argument("--shutdown-grace", type=_seconds, default=limits.shutdown_grace_s, metavar="SECONDS",
                   help=f"on SIGTERM, time for running streams to finish before they are cancelled (default {limits.shutdown_grace_s:g})")
    p.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on every endpoint but /healthz and /readyz "
                        f"(default: ${API_KEY_ENV}, else none)")
    _chunk_flags(p)
    p.add_argument("--threads", type=_positive, default=None,
                   help="PyTorch intra-op threads (default: cores / network calls at once, i.e. streams at once divided by "
                        "--batch, so calls do not oversubscribe)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level")
    ray = p.add_argument_group("Ray Serve (--ray; the 'ray' extra)")
    ray.add_argument("--ray", action="store_true",
                     help="deploy each addon as a Ray Serve deployment of replicas behind Ray's HTTP proxy on --host/--port "
                          "(--threads is then per replica, default 1; the connection timeouts above do not apply, see README)")
    ray.add_argument("--ray-address", default=None,
                     help="Ray cluster to join ('auto': the one this node belongs to; default: start a local one)")
    ray.add_argument("--replicas", type=_positive, default=1, metavar="N", help="replicas of each addon (the minimum when autoscaling)")
    ray.add_argument("--max-replicas", type=_positive, default=None, metavar="N",
                     help="autoscale each addon up to N replicas on ongoing requests (default: no autoscaling)")
    ray.add_argument("--replica-cpus", type=float, default=1.0, metavar="C", help="CPUs reserved by each replica")
    ray.add_argument("--replica-gpus", type=float, default=0.0, metavar="G", help="GPUs per replica (1: one replica per GPU; default 0: none)")
    ray.add_argument("--replica-neuron-cores", type=_non_negative, default=0, metavar="N",
                     help="NeuronCores per replica (Ray's neuron_cores resource: a core range per replica; default 0: none)")
    _plugin_flag(p)
    p.set_defaults(func=cmd_serve)

    p = command("inspect", "show an addon's networks, dims, blocks, artifacts and this host's backends")
    p.add_argument("addon", type=Path, help="source or compiled addon folder")
    _plugin_flag(p)
    p.set_defaults(func=cmd_inspect)

    p = command("parity", "compare every backend of a compiled addon with the eager reference")
    p.add_argument("compiled", type=Path, help="compiled addon folder (with manifest.yaml)")
    p.add_argument("--backend", action=ListFlag, default=[], metavar="NAME",
                   help="backend to check (repeatable or comma list; default: every compiled backend available here)")
    add_deprecated_alias(p, "--backends", "--backend", dest="backend")
    p.add_argument("--texts", type=Path, default=None, metavar="FILE",
                   help="texts to synthesize, one per line (default: a short, a medium and a long sentence)")
    _plugin_flag(p)
    p.set_defaults(func=cmd_parity)
    return parser


def _plugins_in(argv: list[str]) -> list[str]:
    """The ``--plugin`` values of ``argv``, read before the real parse (plugins may add backends to its help)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", action=ListFlag, default=[])
    return pre.parse_known_args(argv)[0].plugin


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ttsstack`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        load_plugins(_plugins_in(argv))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AddonError, RegistryError, ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
