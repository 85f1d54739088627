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
# TorchScript runs the same ATen kernels as the reference.
TORCHSCRIPT = Tolerance(atol=1e-5, rtol=0.0)
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


# Reduced precision (``ttsstack compile --precision``) against the fp32 reference, on any backend and
# device. Weights and activations are rounded on the way in, so the error scales with the output's
# magnitude: fp16 keeps 11 significant bits (about 5e-4 relative per rounding), bf16 8 (about 4e-3),
# int8 dynamic quantization (weights per output channel, activations per tensor per call) 8 bits of
# range (about 4e-3 of a tensor's largest value per rounding). These bounds hold a network's output
# after the roundings of a few layers add up; an autoregressive decoder feeds its own rounded
# output back, and its mel after many steps may drift farther (``ttsstack parity`` reports it).
PRECISION_TOLERANCES: dict[str, Tolerance] = {
    "fp16": Tolerance(atol=1e-2, rtol=1e-2),
    "bf16": Tolerance(atol=5e-2, rtol=5e-2),
    "int8": Tolerance(atol=1e-1, rtol=1e-1),
}


def for_backend(backend: str, device: str = "cpu", precision: str = "fp32") -> Tolerance:
    """The tolerance of one backend's artifacts, compiled at ``precision``, against the (fp32) reference."""
    if precision in PRECISION_TOLERANCES:
        return PRECISION_TOLERANCES[precision]
    if device != "cpu":
        return ACCELERATOR
    return BACKEND_TOLERANCES.get(backend, ACCELERATOR)
