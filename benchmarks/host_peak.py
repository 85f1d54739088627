"""This host's limits, and a model's: what every benchmark table puts beside a measured time.

- :func:`host_description`: CPU model, cores, vector ISA, library versions
  and the load average when measured (recorded with every result).
- :func:`measure_peaks`: fp32 sgemm FLOP/s (``torch.mm`` of 1024 x 1024
  matrices) and memory bandwidth, both as a copy (read + write of a 128 MB
  tensor) and as a GEMV (a 4096 x 4096 fp32 matrix times a vector, the
  memory traffic of one autoregressive step), at a given thread count; the
  best of several runs (noise on a shared host only adds time).
- :func:`count_flops`: FLOPs of one call of a network (``ExportedProgram.module()``)
  at given sizes, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matrix products and convolutions; elementwise work is not counted).
- :func:`parameter_bytes`: bytes of a network's weights, what a step
  network reads per step at least.

A model's limit on this host is its FLOPs over the sgemm peak (compute
bound: a duration model's networks, a decoder over many frames) or its
bytes per step over the GEMV bandwidth (memory bound: an autoregressive
step network at batch 1), whichever is larger; ``x of limit`` is a measured
time over it (1.0 would be the hardware's best).

Run alone it prints the host's description and peaks:
``python benchmarks/host_peak.py [--threads 1,2]``.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time

import torch

from common import ListFlag, parser_for

SGEMM_SIZE = 1024
COPY_BYTES = 128 << 20
GEMV_SHAPE = (4096, 4096)  # 64 MB of fp32: far beyond any cache


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_description() -> dict[str, object]:
    """What the numbers were measured on: CPU model, cores, vector ISA, library versions, and the load average then."""
    from ttsstack.backends.base import package_version
    from ttsstack.backends.cpu import host_isa

    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa": host_isa()["isa"],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "onnxruntime": package_version("onnxruntime"),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # others' work on a shared host
    }


def _best_seconds(call, repeats: int) -> float:
    call()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def measure_peaks(threads: int, repeats: int = 3) -> dict[str, float]:
    """``sgemm_gflops``, ``copy_gbps`` and ``gemv_gbps`` at ``threads`` intra-op threads (best of ``repeats``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(SGEMM_SIZE, SGEMM_SIZE), torch.randn(SGEMM_SIZE, SGEMM_SIZE)
        sgemm = 2 * SGEMM_SIZE**3 / _best_seconds(lambda: torch.mm(a, b), repeats)
        src = torch.empty(COPY_BYTES // 4)
        dst = torch.empty_like(src)
        copy = 2 * COPY_BYTES / _best_seconds(lambda: dst.copy_(src), repeats)
        matrix, vector = torch.randn(*GEMV_SHAPE), torch.randn(GEMV_SHAPE[1])
        gemv = matrix.numel() * 4 / _best_seconds(lambda: torch.mv(matrix, vector), repeats)
    finally:
        torch.set_num_threads(before)
    return {"threads": threads, "sgemm_gflops": sgemm / 1e9, "copy_gbps": copy / 1e9, "gemv_gbps": gemv / 1e9}


def best_peaks(*measured: dict[str, float]) -> dict[str, float]:
    """The best of several measurements of the same peaks (say, at a run's start and end): neighbours only slow them."""
    return {key: max(m[key] for m in measured) for key in measured[0]}


def count_flops(module, args: tuple) -> int:
    """FLOPs of one call ``module(*args)``: matrix products and convolutions, as FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(*args)
    return counter.get_total_flops()


def flops_per_audio_second(voice, text: str) -> float:
    """FLOPs one second of ``voice``'s audio costs in its networks, counted on a synthesis of ``text``.

    Counted on the voice's own runners (run them on the ``eager`` backend:
    compiled artifacts hide their operators from the counter). A Griffin-Lim
    vocoder's FFTs are not counted; a vocoder network is.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        audio = voice.synthesize_audio(text)
    return counter.get_total_flops() / (len(audio) / voice.sample_rate)


def parameter_bytes(program: torch.export.ExportedProgram) -> int:
    """Bytes of a network's parameters and buffers (fp32 as exported)."""
    tensors = {**program.state_dict, **getattr(program, "constants", {})}
    return sum(t.numel() * t.element_size() for t in tensors.values() if isinstance(t, torch.Tensor))


def limit_seconds(flops: float, bytes_moved: float, peaks: dict[str, float]) -> float:
    """The time this host needs at least: FLOPs at the sgemm peak or bytes at the GEMV bandwidth, the larger."""
    return max(flops / (peaks["sgemm_gflops"] * 1e9), bytes_moved / (peaks["gemv_gbps"] * 1e9))


def main() -> None:
    """Print the host's description and its peaks at each thread count."""
    parser = parser_for(__doc__)
    parser.add_argument("--thread", action=ListFlag, default=["1", str(os.cpu_count() or 1)], metavar="N",
                        help="intra-op thread counts to measure at (repeatable or comma list)")
    args = parser.parse_args()
    for key, value in host_description().items():
        print(f"{key:13s} {value}")
    print(f"{'threads':>7s} {'sgemm GFLOP/s':>14s} {'copy GB/s':>10s} {'GEMV GB/s':>10s}")
    for threads in sorted({int(t) for t in args.thread}):
        p = measure_peaks(threads)
        print(f"{threads:7d} {p['sgemm_gflops']:14.1f} {p['copy_gbps']:10.1f} {p['gemv_gbps']:10.1f}")


if __name__ == "__main__":
    main()
