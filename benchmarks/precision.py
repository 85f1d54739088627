"""What ``ttsstack compile --precision`` buys: fp32, bf16, fp16 and int8 artifacts, timed against this host's limit.

Usage: python benchmarks/precision.py [--backend cpu,onnx] [--precision fp32,bf16,fp16,int8] [--steps 100]
       [--frames 860] [--text-length 100] [--runs 50] [--threads 1] [--out DIR | --record]

Two networks at full size, seeded weights, built from the bundled demos' model code:

- ``tacotron2-step``: ``addons/tacotron2-demo/model.py``'s ``DecoderStep`` at
  Tacotron 2's published sizes (512-dim memory, 256-unit prenet, 1024-unit
  attention and decoder LSTM cells, 128-dim attention, 32 location filters
  of width 31): about 18 M parameters, 73 MB of fp32 weights read per step.
  Memory bound at batch 1: its limit is the weights' bytes (at the
  artifact's precision: its file size) over the host's GEMV bandwidth.
- ``fastpitch-decoder``: ``addons/fastpitch-demo/model.py``'s ``Decoder`` at
  FastPitch's decoder width, depth and kernel (384 channels, 6 conv blocks of
  kernel 3) on ``--frames`` frames (860: 10 s of audio). Compute bound: its
  limit is its FLOPs (``FlopCounterMode``) over the host's sgemm peak.

For each backend and precision the network is compiled by the backend itself
(the same ``compile`` and ``load`` as ``ttsstack compile``), validated
against the fp32 program with the precision's tolerance (``valid``: what
``ttsstack compile`` would decide), and timed: the median of ``--runs``
calls (fewer, at least 3, past 10 s; the step network on one step's inputs)
and the fastest of them (``best ms``: on a shared host noise only adds time,
so the fastest call is the closest to the code's cost; ``vs fp32`` and
``x limit`` use it). The error against fp32 eager
PyTorch is measured on what a listener gets: the step network runs
``--steps`` steps autoregressively, each fed its own previous frame and
states, and the frames are compared with fp32's (``mel err`` mean absolute,
``max err`` max absolute over max |fp32|); the decoder compares its one call.
``limit`` is this host's lower bound for the call (see ``host_peak.py``; its
peaks measured at the run's start and end, the better of the two kept) and
``x limit`` the fastest call over it. Prints a table and writes
``precision.json`` (with the host's description and peaks) to ``--out``
(default ``benchmarks/out/``; ``--record``: ``benchmarks/results/``).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from ttsstack.addon import MAX_BATCH, DimSpec, NetworkSpec, batched
from ttsstack.backends.base import FP32, Artifact, NetworkArtifacts
from ttsstack.compiler.validate import validate_runner
from ttsstack.runtime.registry import BACKENDS
from ttsstack.tolerances import for_backend

from common import ListFlag, add_output_flags, add_timing_flags, output_dir, parser_for
from host_peak import best_peaks, count_flops, host_description, limit_seconds, measure_peaks, parameter_bytes

ROOT = Path(__file__).resolve().parent.parent
N_MELS = 80
TACOTRON2_SIZES = {  # Tacotron 2 (Shen et al. 2018) as published
    "EMBED": 512, "MEMORY": 512, "PRENET": 256, "ATTENTION_RNN": 1024, "DECODER_RNN": 1024,
    "ATTENTION": 128, "LOCATION_FILTERS": 32, "LOCATION_KERNEL": 31,
}
FASTPITCH_DECODER = {"channels": 384, "kernel_size": 3, "layers": 6}  # FastPitch's decoder: d_model, conv kernel, layers


def _model_module(addon: str):
    """The demo's ``model.py`` as a fresh module (its size constants may then be set without touching the demo)."""
    path = ROOT / "addons" / addon / "model.py"
    spec = importlib.util.spec_from_file_location(f"{addon.replace('-', '_')}_model_full_size", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tensor_spec(tensor: torch.Tensor, dims: dict[int, str]) -> dict:
    shape = [dims.get(axis, size) for axis, size in enumerate(tensor.shape)]
    return {"shape": shape, "dtype": str(tensor.dtype).removeprefix("torch.")}


class Network:
    """A full-size network: its exported program, spec, example inputs and how it is measured."""

    def __init__(
        self, name: str, module: torch.nn.Module, inputs: dict, output_names: list[str], dim: str, axes: dict,
        batch: bool = False,
    ):
        self.name = name
        self.inputs = inputs
        args = tuple(inputs.values())
        with torch.no_grad():
            outputs = module(*args)
        outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        shapes = {name: {a: dim for a in axes.get(name, ())} for name in inputs}
        size = torch.export.Dim(dim, min=2, max=4096)
        rows = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)} if batch else {}
        dynamic = tuple({**rows, **{a: size for a in axes.get(name, ())}} or None for name in inputs)
        examples = tuple(batched(inputs, 2).values()) if batch else args  # export fixes an axis whose example is 1
        self.program = torch.export.export(module, examples, dynamic_shapes=dynamic)
        out_axes = {name: {a: dim for a in axes.get(name, ())} for name in output_names}
        self.spec = NetworkSpec.model_validate({
            "role": name, "file": f"{name}.pt2", "batch": batch,
            "inputs": {n: _tensor_spec(t, shapes[n]) for n, t in inputs.items()},
            "outputs": {n: _tensor_spec(t, out_axes[n]) for n, t in zip(output_names, outputs)},
        })
        self.dims = {dim: DimSpec(max=4096)}


def tacotron2_step(text_length: int, batch: bool = False) -> Network:
    """The Tacotron 2 decoder step at published sizes (see the module docstring), on a text of ``text_length`` tokens;
    with ``batch``, exported with a batch axis (``batch: true``)."""
    model = _model_module("tacotron2-demo")
    for name, value in TACOTRON2_SIZES.items():
        setattr(model, name, value)
    torch.manual_seed(0)
    step = model.DecoderStep(N_MELS).eval()
    names = list(inspect.signature(step.forward).parameters)
    sizes = {"previous_frame": [1, 1, N_MELS], "attention_weights": [1, text_length],
             "attention_weights_cum": [1, text_length], "attention_context": [1, model.MEMORY],
             "memory": [1, text_length, model.MEMORY], "processed_memory": [1, text_length, model.ATTENTION]}
    gen = torch.Generator().manual_seed(1)
    inputs = {}
    for name in names:
        if name == "memory_mask":
            inputs[name] = torch.ones(1, text_length, dtype=torch.bool)
        elif name in ("memory", "processed_memory"):
            inputs[name] = torch.randn(*sizes[name], generator=gen)
        else:
            width = model.DECODER_RNN if name.startswith("decoder_") else model.ATTENTION_RNN
            inputs[name] = torch.zeros(*sizes.get(name, [1, width]))
    states = [n for n in names if n not in ("memory", "processed_memory", "memory_mask")]
    outputs = ["frame", "stop", *(f"next_{n}" for n in states[1:])]
    axes = {n: (1,) for n in names if n in ("attention_weights", "attention_weights_cum", "memory", "processed_memory",
                                               "memory_mask")}
    axes.update({f"next_{n}": (1,) for n in ("attention_weights", "attention_weights_cum")})
    return Network("tacotron2-step", step, inputs, outputs, "T_text", axes, batch)


def fastpitch_decoder(frames: int, batch: bool = False) -> Network:
    """The FastPitch-size decoder (see the module docstring) on ``frames`` frames; with ``batch``, exported with a batch axis."""
    model = _model_module("fastpitch-demo")
    sizes = FASTPITCH_DECODER
    torch.manual_seed(0)
    decoder = model.Decoder(N_MELS, channels=sizes["channels"])
    decoder.convs = model.ConvStack(sizes["channels"], kernel_size=sizes["kernel_size"], layers=sizes["layers"])
    gen = torch.Generator().manual_seed(1)
    inputs = {"frames": torch.randn(1, frames, sizes["channels"], generator=gen), "frames_mask": torch.ones(1, frames)}
    return Network("fastpitch-decoder", decoder.eval(), inputs, ["mel"], "T_frames",
                   {"frames": (1,), "frames_mask": (1,), "mel": (1,)}, batch)


def call_seconds(call, repeats: int, budget_s: float = 10.0) -> tuple[float, float]:
    """Median and fastest of ``repeats`` timed calls after a warm-up, fewer (at least 3) once ``budget_s`` is spent."""
    call()
    times = []
    while len(times) < repeats and (len(times) < 3 or sum(times) < budget_s):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def _autoregressive_frames(run, network: Network, steps: int) -> torch.Tensor:
    """``steps`` frames of the step network, each step fed its own frame and states: ``[steps, n_mels]``."""
    fixed = {n: network.inputs[n] for n in ("memory", "processed_memory", "memory_mask")}
    state = {n: t for n, t in network.inputs.items() if n not in fixed}
    frames = []
    for _ in range(steps):
        out = run({**state, **fixed})
        frames.append(out["frame"][0, -1])
        state = {n: out["frame"][:, -1:] if n == "previous_frame" else out[f"next_{n}"] for n in state}
    return torch.stack(frames)


def _outputs(network: Network, steps: int, run) -> torch.Tensor:
    """What the listener gets from ``run``: the step network's frames over ``steps`` steps, or the decoder's mel."""
    with torch.inference_mode():
        if network.name == "tacotron2-step":
            return _autoregressive_frames(run, network, steps)
        return run(network.inputs)["mel"][0]


def measure(network: Network, backend_name: str, precision: str, args, work: Path) -> dict:
    """Compile, validate, time and compare one network on one backend at one precision."""
    cls = BACKENDS.get(backend_name)
    backend = cls() if precision == FP32 else cls(precision=precision)
    path = work / f"{network.name}.{backend_name}.{precision}{backend.suffix_for(backend.routes(network.spec)[0])}"
    program_file = work / f"{network.name}.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        details = backend.compile(network.program, network.spec, network.dims, None, path, backend.routes(network.spec)[0]) or {}
    runner = backend.load(NetworkArtifacts(network.name, network.spec, program_file, [Artifact(path, None, details)]))
    reference = lambda inputs: dict(zip(network.spec.outputs, _as_tuple(network.program.module()(*inputs.values()))))  # noqa: E731
    try:
        validate_runner(network.name, backend_name, reference, runner, network.dims, None,
                        for_backend(backend_name, backend.device, precision))
        valid = "yes"
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: the point is to see the error
        valid = "no: " + str(exc).splitlines()[1].strip()[:80]
    with torch.inference_mode():
        seconds, fastest = call_seconds(lambda: runner(network.inputs), args.runs)
    want = _outputs(network, args.steps, reference)
    got = _outputs(network, args.steps, runner)
    flops = count_flops(network.program.module(), tuple(network.inputs.values()))
    memory_bound = network.name == "tacotron2-step"
    return {
        "network": network.name, "backend": backend_name, "precision": precision, "ms": seconds * 1e3,
        "fastest_ms": fastest * 1e3, "bound_by": "bytes" if memory_bound else "flops", "artifact_mb": path.stat().st_size / 1e6,
        "gflops": flops / 1e9, "mel_mae": (got - want).abs().mean().item(),
        "mel_max_rel": ((got - want).abs().max() / want.abs().max()).item(), "valid": valid,
        "details": details,
    }


def _as_tuple(out):
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def table(rows: list[dict]) -> str:
    """The rows as text, with each network's speed-up (fastest calls) over its fp32 row on the same backend."""
    fp32 = {(r["network"], r["backend"]): r["fastest_ms"] for r in rows if r["precision"] == FP32}
    header = (f"{'network':18s} {'backend':8s} {'prec':5s} {'ms':>8s} {'best ms':>8s} {'vs fp32':>7s} {'limit ms':>8s} {'x limit':>7s} "
              f"{'MB':>6s} {'mel err':>8s} {'max err':>8s}  valid")
    lines = [header, "-" * len(header)]
    for r in rows:
        base = fp32.get((r["network"], r["backend"]))
        speedup = f"{base / r['fastest_ms']:6.2f}x" if base else "      -"
        lines.append(
            f"{r['network']:18s} {r['backend']:8s} {r['precision']:5s} {r['ms']:8.2f} {r['fastest_ms']:8.2f} {speedup:>7s} {r['limit_ms']:8.2f} "
            f"{r['x_limit']:7.2f} {r['artifact_mb']:6.1f} {r['mel_mae']:8.1e} {r['mel_max_rel']:8.1e}  {r['valid']}"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, build the two networks, measure every backend and precision, print, write the JSON."""
    parser = parser_for(__doc__)
    parser.add_argument("--backend", action=ListFlag, default=["cpu", "onnx"], metavar="NAME", help="backend to measure")
    parser.add_argument("--precision", action=ListFlag, default=["fp32", "bf16", "fp16", "int8"], metavar="NAME",
                        help="precision to measure (one a backend does not offer is skipped)")
    parser.add_argument("--network", action=ListFlag, default=["tacotron2-step", "fastpitch-decoder"], metavar="NAME",
                        help="network to measure")
    parser.add_argument("--steps", type=int, default=100, help="autoregressive steps compared with fp32")
    parser.add_argument("--frames", type=int, default=860, help="frames of the decoder call (860: 10 s of audio)")
    parser.add_argument("--text-length", type=int, default=100, help="tokens of the step network's memory")
    add_timing_flags(parser, runs=50, each="row")
    add_output_flags(parser)
    args = parser.parse_args()
    out = output_dir(parser, args) / "precision.json"
    torch.set_num_threads(args.threads)
    first = measure_peaks.__wrapped__(args.threads)
    builders = {"tacotron2-step": lambda: tacotron2_step(args.text_length), "fastpitch-decoder": lambda: fastpitch_decoder(args.frames)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ttsstack-precision-") as work:
        for name in args.network:
            network = builders[name]()
            torch.export.save(network.program, Path(work) / f"{network.name}.pt2")
            print(f"{name}: {parameter_bytes(network.program) / 1e6:.1f} MB of fp32 parameters", flush=True)
            for backend in args.backend:
                for precision in args.precision:
                    if precision not in BACKENDS.get(backend).precisions:
                        continue
                    rows.append(measure(network, backend, precision, args, Path(work)))
                    print(f"  {name} {backend} {precision}: {rows[-1]['fastest_ms']:.2f} ms", flush=True)
    peaks = best_peaks(first, measure_peaks.__wrapped__(args.threads))
    for row in rows:
        flops, moved = (row["gflops"] * 1e9, 0) if row["bound_by"] == "flops" else (0, row["artifact_mb"] * 1e6)
        row["limit_ms"] = limit_seconds(flops, moved, peaks) * 1e3
        row["x_limit"] = row["fastest_ms"] / row["limit_ms"]
    print(f"host: {host_description()['cpu']}, {args.threads} thread(s), best of the run's start and end: "
          f"sgemm {peaks['sgemm_gflops']:.1f} GFLOP/s, GEMV {peaks['gemv_gbps']:.1f} GB/s, copy {peaks['copy_gbps']:.1f} GB/s")
    print(table(rows))
    result = {"benchmark": "precision", "threads": args.threads, "steps": args.steps, "frames": args.frames,
              "text_length": args.text_length, "runs": args.runs, "host": host_description(), "peaks": peaks,
              "rows": rows}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
