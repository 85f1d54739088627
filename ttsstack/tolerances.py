"""Numerical tolerances of every parity check, in one place.

Each backend's output is compared with the reference (eager PyTorch on the
exported programs); streamed output with whole-utterance output. A check
passes when ``max|a - b| <= atol + rtol * max|b|``, per tensor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Absolute and relative (to the reference's largest magnitude) error allowed."""

    atol: float
    rtol: float

    def passes(self, max_abs_error: float, reference_scale: float) -> bool:
        """Whether an error of ``max_abs_error`` against a reference of that magnitude is allowed."""
        return max_abs_error <= self.atol + self.rtol * reference_scale

    def plus(self, other: "Tolerance") -> "Tolerance":
        """The tolerance of two independent error sources added (a backend's and batching's)."""
        return Tolerance(self.atol + other.atol, self.rtol + other.rtol)


# Same arithmetic, same library: only summation order may differ.
STREAMING = Tolerance(atol=1e-5, rtol=0.0)
# TorchScript runs the same ATen kernels as the reference. Relative part: a trained voice's
# log-mel reaches |11.5| (its floor), where one float32 step is 1e-6, so an absolute 1e-5 alone
# is only ten steps there.
TORCHSCRIPT = Tolerance(atol=1e-5, rtol=1e-6)
# ONNX Runtime fuses and reorders float32 arithmetic.
ONNX_CPU = Tolerance(atol=1e-4, rtol=1e-4)
# AOTInductor generates its own kernels: it fuses and reorders float32 arithmetic as ONNX Runtime
# does, so the same bound. Measured: the full-size FastSpeech2-Conformer encoder (``transformers``'
# defaults, 4 conformer blocks of 384 channels) differs by 3.2e-5 on outputs of magnitude 7.7
# (4e-6 relative), over TORCHSCRIPT's bound; the demos' networks by under 1e-5.
AOTINDUCTOR = Tolerance(atol=1e-4, rtol=1e-4)
# Audio sent as PCM16 (HTTP, WAV files): the same float samples clipped to [-1, 1] and
# rounded to the nearest of 32767 steps per unit, so at most half a step apart.
PCM16 = Tolerance(atol=0.5 / 32767, rtol=0.0)
# A vocoder network's waveform on any backend against the reference's: its samples are at most 1
# in magnitude and leave as PCM16, so an error under 1e-3 (33 PCM16 steps, -60 dBFS) is inaudible; it
# absorbs the frame error of the backend (ONNX_CPU, ACCELERATOR) grown through the vocoder's layers.
WAVEFORM = Tolerance(atol=1e-3, rtol=0.0)
# A vocoder declared ``compare: spectrum``: the mean absolute difference of the natural-log mel
# spectrograms (the addon's own mel settings) of its waveform and the reference's. Such a vocoder's
# samples are chaotic in its inputs (Kokoro's iSTFTNet: its sine source's phase reaches ~1e4 radians and
# goes through atan2), so no backend that reorders float32 arithmetic meets WAVEFORM. Measured on
# Kokoro's architecture (tiny config, ``onnx`` against eager): 0.043 to 0.049 while samples differed by
# up to 0.49; a gain of 1.1 (0.83 dB) gives 0.095 and a shift of 3 frames 0.23, both refused.
SPECTRUM = Tolerance(atol=0.07, rtol=0.0)
# A call run as one row of a batch (streams batched by ``RuntimeOptions.batch``) against the same
# call alone, on the same backend: a matrix product of more rows may take another kernel and sum in
# another order, and padded steps add zeros to reductions. Measured on the demos: under 1e-6 relative.
# Added to the backend's own tolerance where a batched artifact is compared with the reference.
BATCHED = Tolerance(atol=1e-5, rtol=1e-5)
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


# A backend's route (``cpu``: TorchScript first, AOTInductor where a trace cannot hold the shapes)
# whose arithmetic differs from the backend's default.
ROUTE_TOLERANCES: dict[str, Tolerance] = {"aotinductor": AOTINDUCTOR}


def for_backend(backend: str, device: str = "cpu", precision: str = "fp32", routes: Iterable[str] = ()) -> Tolerance:
    """The tolerance of one backend's artifacts, compiled at ``precision`` by ``routes``, against the (fp32) reference.

    Of several routes (the networks of one voice may take different ones), the loosest bound holds.
    """
    if precision in PRECISION_TOLERANCES:
        return PRECISION_TOLERANCES[precision]
    if device != "cpu":
        return ACCELERATOR
    bounds = [BACKEND_TOLERANCES.get(backend, ACCELERATOR), *(ROUTE_TOLERANCES[r] for r in routes if r in ROUTE_TOLERANCES)]
    return max(bounds, key=lambda t: (t.atol, t.rtol))

# Encoded audio (HTTP response formats) against the voice's own samples, decoded by a standard decoder
# (FFmpeg through PyAV). A codec may add samples, at its own rate: MP3 its encoder and decoder delay
# (576 + 529) and the rest of its last 1152-sample frame when no gapless header says where the audio
# ends (a stream has none); AAC its 1024-sample priming and the rest of its last 1024-sample frame;
# Opus the rest of its last 20 ms frame (its pre-skip is in the stream). Lossless formats add none. A
# resampled stream may differ by a few samples more (the resampler's filter at the start and the end).
CODEC_PADDING_SAMPLES: dict[str, int] = {"mp3": 1105 + 1152, "aac": 2 * 1024, "opus": 960}
RESAMPLING_SLACK_SAMPLES = 32
# Lossy codecs keep the waveform of speech to a normalized correlation (at the best lag within the
# padding) above this; lossless ones above the second; a resampled lossless stream (G.711 mu-law, whose
# 8-bit step is ~ -38 dB, at 8 kHz; PCM at another rate) above the third, as FFmpeg's resampler and the
# reference's band-limited (FFT) one differ near the new Nyquist frequency and at the utterance's ends.
LOSSY_CORRELATION = 0.9
LOSSLESS_CORRELATION = 0.999
RESAMPLED_CORRELATION = 0.99


@dataclass(frozen=True)
class WordTimingBar:
    """How far word starts may be from espeak-ng's own word events, in frames: the median and the 95th
    percentile of the absolute error over the words of a test text."""

    median_frames: float
    p95_frames: float


# Word timings read from espeak-ng's own durations (the demo's stack fed the durations its training
# audio has): only the mapping from tokens to words and frames to seconds is checked; what is left is
# where a phoneme boundary falls inside its frames. Measured: median 0.65, p95 1.57, max 1.8 frames.
WORD_TIMINGS_FROM_ESPEAK_DURATIONS = WordTimingBar(median_frames=1.0, p95_frames=3.0)
# The demo voice's own predicted durations: the mapping plus the duration model's error, which adds up
# along a sentence. Clause pauses are predicted short (6 frames for espeak-ng's 13 after "there,", 4 for
# its 18 after "world:"), so the words after them are early. Measured on the test's texts: median 0.97,
# p95 17.4, max 19.5 frames (the words of sentences without such pauses within 2 frames).
WORD_TIMINGS_DEMO_PREDICTED = WordTimingBar(median_frames=1.5, p95_frames=20.0)
