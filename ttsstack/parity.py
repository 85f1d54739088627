"""Parity: every backend against the eager reference, network by network and end to end, whole and streamed.

The reference is the ``eager`` backend (the exported programs themselves) run
on whole utterances. For each backend the checks are:

- each network, fed the reference's own inputs for that network (its states
  too, for a step network), through the backend's ``Network`` block (so static
  backends pad, mask and window exactly as in production) against the
  reference's outputs;
- the whole mel of each text, with the decoder run on whole pieces;
- the streamed mel of each text, with the voice's default chunking;
- for an addon whose vocoder is a network: the waveform of each text, whole
  and streamed, with the :data:`~ttsstack.tolerances.WAVEFORM` tolerance; a
  vocoder declared ``compare: spectrum`` by the mean absolute difference of
  log-mel spectrograms instead, within :data:`~ttsstack.tolerances.SPECTRUM`
  (its row and the audio rows then read in log-mel units).

Every backend and the reference split the texts into the same pieces: the
shortest that any of them needs (a static backend's unbounded encoder takes at
most its largest bucket).

A check passes when ``max|a - b| <= atol + rtol * max|b|`` with the backend's
tolerance from :mod:`ttsstack.tolerances`; for artifacts compiled at a lower
precision (``ttsstack compile --precision``) that is the precision's, and the
rows are the error against fp32 (the reference computes in fp32). Each mel
row also gives the mean absolute error over every frame (``mean abs``), the
number that says how far a whole utterance moved. At a lower precision a
duration or the decoder's stop step may round to another frame count: such
a text is listed with its length change and not compared (the network rows
still compare every call). ``ttsstack parity`` prints
:meth:`ParityReport.table` and the test suite runs :func:`check_parity` on the
demo addon: the same checks either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .addon import AddonSpec
from .audio import MelSettings, log_mel_spectrogram
from .compiler.manifest import read_manifest
from .loader import load
from .runtime.builder import BuildContext, RuntimeOptions
from .runtime.network import NetworkRunner
from .runtime.registry import BACKENDS
from .runtime.vocoders import mel_settings
from .runtime.voice import Voice
from .tolerances import SPECTRUM, WAVEFORM, Tolerance, for_backend

DEFAULT_TEXTS = (
    "Hi.",
    "The quick brown fox jumps over the lazy dog.",
    "This one sentence keeps going, clause after clause, with commas and more words, so that its characters "
    "outnumber the largest shape bucket that a static backend compiles for the text, and its frames fill a great "
    "many decoder windows, which is exactly where any padding or windowing mistake would show up in the mel.",
)
WHOLE = RuntimeOptions(chunk_frames=1 << 30, first_chunk_frames=1 << 30, stateful_vocoder=False)
"""Options that make the decoder, and a vocoder network itself (not its stateful twin), run once on each whole piece."""


@dataclass(frozen=True)
class ParityRow:
    """One line of the table: a backend's worst error on one network or stage, and the verdict."""

    backend: str
    stage: str
    max_abs: float
    max_rel: float
    tolerance: Tolerance
    passed: bool
    detail: str = ""
    mean_abs: float = 0.0


@dataclass
class ParityReport:
    """All rows, where each backend ran, and the backends skipped on this host (with why)."""

    texts: int
    rows: list[ParityRow] = field(default_factory=list)
    placements: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every row passed."""
        return all(row.passed for row in self.rows)

    def table(self) -> str:
        """The report as text: placements, one row per (backend, network or stage), skipped backends."""
        lines = [f"parity against the eager reference on {self.texts} text(s)"]
        lines += [f"  {name}: {where}" for name, where in self.placements.items()]
        header = (f"{'backend':12s} {'network or stage':18s} {'max abs':>9s} {'max rel':>9s} {'mean abs':>9s} "
                  f"{'atol':>6s} {'rtol':>6s}  result")
        lines += ["", header, "-" * len(header)]
        for r in self.rows:
            verdict = ("pass" if r.passed else "FAIL") + (f" ({r.detail})" if r.detail else "")
            lines.append(
                f"{r.backend:12s} {r.stage:18s} {r.max_abs:9.2e} {r.max_rel:9.2e} {r.mean_abs:9.2e} "
                f"{r.tolerance.atol:6g} {r.tolerance.rtol:6g}  {verdict}"
            )
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        failed = sum(not r.passed for r in self.rows)
        lines.append(f"{failed} of {len(self.rows)} check(s) failed" if failed else f"all {len(self.rows)} checks passed")
        return "\n".join(lines)


class _Recorder:
    """A runner that keeps the inputs and outputs of every call.

    ``cache`` states and the ``cache_mask`` are copied: the decoder writes the
    next slots into the same buffers.
    """

    def __init__(self, runner: NetworkRunner):
        self.runner = runner
        self.spec = runner.spec
        self.static_lengths = runner.static_lengths
        self.calls: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
        self.mutable = {name for name, state in self.spec.states.items() if state.cache} | {self.spec.cache_mask}

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = self.runner(inputs)
        self.calls.append(({n: t.clone() if n in self.mutable else t for n, t in inputs.items()}, outputs))
        return outputs


class _Errors:
    """The worst error over several comparisons of one row.

    With ``lengths_may_differ`` (an utterance at a lower precision: a
    duration or the stop step may round to another frame count), a
    comparison of another length is counted and skipped instead of failing.
    """

    def __init__(self, tolerance: Tolerance, lengths_may_differ: bool = False):
        self.tolerance = tolerance
        self.lengths_may_differ = lengths_may_differ
        self.resized: list[str] = []
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.abs_sum = 0.0
        self.count = 0
        self.passed = True
        self.detail = ""

    def add(self, got: torch.Tensor, want: torch.Tensor, what: str) -> None:
        if got.shape != want.shape and self.lengths_may_differ and got.shape[1:] == want.shape[1:]:
            self.resized.append(f"{what}: {got.shape[0]}, reference {want.shape[0]}")
            return
        if got.shape != want.shape:
            self.passed = False
            self.detail = f"{what}: shape {tuple(got.shape)}, reference {tuple(want.shape)}"
            return
        if want.numel() == 0:
            return
        self.compare(got, want, what)

    def compare(self, got: torch.Tensor, want: torch.Tensor, what: str) -> None:
        """Count one comparison of tensors of one shape: element by element."""
        difference = (got.double() - want.double()).abs()
        error = difference.max().item()
        scale = want.double().abs().max().item()
        self.abs_sum += difference.sum().item()
        self.count += difference.numel()
        self.max_abs = max(self.max_abs, error)
        self.max_rel = max(self.max_rel, error / scale if scale else 0.0)
        if not self.tolerance.passes(error, scale):
            self.passed = False

    def row(self, backend: str, stage: str) -> ParityRow:
        mean = self.abs_sum / self.count if self.count else 0.0
        if self.resized:
            self.detail = f"lengths differ, not compared: {'; '.join(self.resized)}"
        return ParityRow(backend, stage, self.max_abs, self.max_rel, self.tolerance, self.passed, self.detail, mean)


class _SpectralErrors(_Errors):
    """The worst mean absolute log-mel difference over several waveform comparisons (``compare: spectrum``)."""

    def __init__(self, settings: MelSettings, lengths_may_differ: bool = False):
        super().__init__(SPECTRUM, lengths_may_differ)
        self.settings = settings
        self.short = 0

    def compare(self, got: torch.Tensor, want: torch.Tensor, what: str) -> None:
        if want.numel() <= self.settings.n_fft // 2:
            self.short += 1  # too short for one STFT frame
            self.detail = f"{self.short} waveform(s) too short for a spectrum, not compared"
            return
        spectra = [log_mel_spectrogram(t.reshape(-1).float().numpy(), self.settings) for t in (got, want)]
        difference = float(abs(spectra[0] - spectra[1]).mean())
        self.abs_sum += difference
        self.count += 1
        self.max_abs = max(self.max_abs, difference)
        if not self.tolerance.passes(difference, 0.0):
            self.passed = False


def _errors_for(spec: AddonSpec, network: str, tolerance: Tolerance, lengths_may_differ: bool = False) -> _Errors:
    """How the outputs of ``network`` are compared: by log-mel spectrum for a vocoder declared ``compare: spectrum``."""
    if spec.networks[network].compare == "spectrum":
        return _SpectralErrors(mel_settings(spec.audio), lengths_may_differ)
    return _Errors(tolerance, lengths_may_differ)


def _available(folder: Path, report: ParityReport) -> list[str]:
    names = []
    for name in read_manifest(folder).backends():
        cls = BACKENDS.find(name)
        reason = "not a backend of this ttsstack" if cls is None else cls.unavailable_reason()
        if reason:
            report.skipped[name] = reason
        else:
            names.append(name)
    return names


@torch.inference_mode()
def check_parity(folder: str | Path, backends: Sequence[str] | None = None, texts: Sequence[str] = DEFAULT_TEXTS) -> ParityReport:
    """Run ``texts`` through each backend of the compiled addon at ``folder`` and compare with eager.

    ``backends`` defaults to every backend compiled in ``folder`` that can run
    on this host (the others are listed as skipped). A named backend missing
    from the compiled addon is an error naming the compile command that adds it.
    """
    folder = Path(folder)
    report = ParityReport(texts=len(texts))
    names = list(backends) if backends is not None else _available(folder, report)
    voices = {name: load(folder, backend=name, compile_if_needed=False) for name in names}
    eager = load(folder, backend="eager", compile_if_needed=False)
    max_tokens = min([eager.max_tokens, *(voice.max_tokens for voice in voices.values())])
    recorders = {name: _Recorder(runner) for name, runner in eager.runners.items()}
    reference = Voice(eager.spec, recorders, options=WHOLE, backend="eager")
    reference.max_tokens = max_tokens
    vocoded = bool(reference.vocoder.networks)
    wanted = [_synthesize(reference, text, vocoded) for text in texts]
    twins = [n for n, s in eager.spec.networks.items() if s.stateful]
    if twins:  # the stateful twins run only when streaming: record them in a streamed eager run
        streamed = Voice(eager.spec, {**eager.runners, **{n: recorders[n] for n in twins}}, backend="eager")
        streamed.max_tokens = max_tokens
        for text in texts:
            _synthesize(streamed, text, vocoded)
    manifest = read_manifest(folder)
    for name, voice in voices.items():
        voice.max_tokens = max_tokens
        backend = BACKENDS.get(name)()
        precision = manifest.precision(name)
        tolerance = for_backend(name, backend.device, precision, manifest.routes(name))
        report.placements[name] = f"{backend.placement}, {precision}"
        ctx = BuildContext(voice.spec, voice.runners, backend.block_variants)
        for network, recorder in recorders.items():
            if network not in voice.runners:
                continue  # a stateful twin the backend does not run (a static one streams on windows)
            spec = recorder.spec
            if spec.stateful:  # dynamic shapes only: its recorded calls, inputs the runtime filled included
                call = voice.runners[network]
            else:
                block = ctx.build({"type": "Network", "network": network}, f"parity.{network}")
                fed = [*spec.data_inputs, *spec.states, *(n for n in (spec.position, spec.cache_mask) if n), *spec.noise]
                call = lambda inputs, block=block, fed=fed: block.call({n: inputs[n] for n in fed})  # noqa: E731
            errors = _errors_for(voice.spec, network, tolerance)
            for inputs, want in recorder.calls:
                got = call(inputs)
                for output, tensor in want.items():
                    errors.add(got[output], tensor, output)
            report.rows.append(errors.row(name, network))
        whole = Voice(voice.spec, voice.runners, backend.block_variants, WHOLE, name)
        whole.max_tokens = max_tokens
        for how, synth in (("whole", whole), ("streamed", voice)):
            reduced = precision != "fp32"
            errors = _Errors(tolerance, reduced)
            audio_tolerance = WAVEFORM if not reduced else tolerance
            waveform = _errors_for(voice.spec, voice.vocoder.networks[0], audio_tolerance, reduced) if vocoded else None
            for text, (mel, audio) in zip(texts, wanted):
                got_mel, got_audio = _synthesize(synth, text, vocoded)
                errors.add(got_mel, mel, f"text {text[:24]!r}")
                if vocoded:
                    waveform.add(got_audio, audio, f"text {text[:24]!r}")
            report.rows.append(errors.row(name, f"mel, {how}"))
            if vocoded:
                report.rows.append(waveform.row(name, f"audio, {how}"))
    return report


def _synthesize(voice: Voice, text: str, audio: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The text's frames, and its waveform when ``audio`` (both from one run)."""
    if not audio:
        return torch.from_numpy(voice.synthesize(text)), None
    timed = voice.synthesize_timed(text)
    return torch.from_numpy(timed.mel), torch.from_numpy(timed.audio)
