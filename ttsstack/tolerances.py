"""Numerical tolerances of every parity check, in one place.

Each backend's output is compared with the reference (eager PyTorch on the
exported programs); streamed output with whole-utterance output. A check
passes when ``max|a - b| <= atol + rtol * max|b|``, per tensor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Absolute and relative (to the reference's largest magnitude) error allowed."""

    atol: float
    rtol: float

    def passes(self, max_abs_error: float, reference_scale: float) -> bool:
        """Whether an error of ``max_abs_error`` against a reference of that magnitude is allowed."""
        return max_abs_error <= self.atol + self.rtol * reference_scale


# Same arithmetic, same library: only summation order may differ.
STREAMING = Tolerance(atol=1e-5, rtol=0.0)
# TorchScript runs the same ATen kernels as the reference; AOTInductor may fuse and reorder a
# few. Relative part: a trained voice's log-mel reaches |11.5| (its floor), where one float32
# step is 1e-6, so an absolute 1e-5 alone is only ten steps there.
TORCHSCRIPT = Tolerance(atol=1e-5, rtol=1e-6)
# ONNX Runtime fuses and reorders float32 arithmetic.
ONNX_CPU = Tolerance(atol=1e-4, rtol=1e-4)
# Audio sent as PCM16 (HTTP, WAV files): the same float samples clipped to [-1, 1] and
# rounded to the nearest of 32767 steps per unit, so at most half a step apart.
PCM16 = Tolerance(atol=0.5 / 32767, rtol=0.0)
# A vocoder network's waveform on any backend against the reference's: its samples are at most 1
# in magnitude and leave as PCM16, so an error under 1e-3 (33 PCM16 steps, -60 dBFS) is inaudible; it
# absorbs the frame error of the backend (ONNX_CPU, ACCELERATOR) grown through the vocoder's layers.
WAVEFORM = Tolerance(atol=1e-3, rtol=0.0)
# GPU kernels (TF32 off) and Neuron's compiler (fp32 auto-cast off) reorder more.
ACCELERATOR = Tolerance(atol=1e-3, rtol=1e-3)

BACKEND_TOLERANCES: dict[str, Tolerance] = {
    "eager": STREAMING,
    "cpu": TORCHSCRIPT,
    "onnx": ONNX_CPU,
    "onnx-static": ONNX_CPU,
    "neuron": ACCELERATOR,
}


def for_backend(backend: str, device: str = "cpu") -> Tolerance:
    """The tolerance of one backend's artifacts against the reference."""
    if device != "cpu":
        return ACCELERATOR
    return BACKEND_TOLERANCES.get(backend, ACCELERATOR)
