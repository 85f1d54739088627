"""A vocoder network (role ``vocoder``): streamed on overlapping windows exactly, on every backend, instead of Griffin-Lim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal

import ttsstack
from ttsstack.addon import DimSpec, NetworkSpec, parse_spec
from ttsstack.audio import GriffinLim
from ttsstack.backends.base import BackendError, ModuleRunner
from ttsstack.backends.onnx_static import OnnxStaticBackend
from ttsstack.cli import main
from ttsstack.masking import MaskedConvolutions
from ttsstack.parity import WHOLE
from ttsstack.runtime import RuntimeOptions, StackError, Voice
from ttsstack.runtime.builder import plan_stack
from ttsstack.runtime.vocoders import mel_settings
from ttsstack.tolerances import STREAMING, WAVEFORM

from ..conftest import TEST_BACKENDS
from ..tiny_addon import N_MELS, tiny_spec
from ..tiny_vocoder import CONTEXT, SAMPLES_PER_FRAME, TinyHifiGan, receptive_radius, tiny_hifigan, vocoder_entry, vocoder_spec

TEXT = "A text long enough for many vocoder windows, across two sentences. Here is the second one!"
SMALL = RuntimeOptions(chunk_frames=16, first_chunk_frames=8)
"""Small chunks: many windows, each window's context reaching into its neighbours."""


def _error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


@pytest.fixture(scope="module")
def reference(tiny_vocoder_compiled) -> np.ndarray:
    """The eager programs' waveform, the vocoder run once on the whole mel."""
    return ttsstack.load(tiny_vocoder_compiled, "eager", options=WHOLE, compile_if_needed=False).synthesize_audio(TEXT)


def test_fixture_declares_its_true_receptive_radius():
    assert receptive_radius(tiny_hifigan().module) == CONTEXT


@pytest.mark.parametrize("backend", ["eager", *TEST_BACKENDS])
def test_streamed_waveform_equals_the_whole_run(tiny_vocoder_compiled, reference, backend):
    """On overlapping windows (the stateful twin turned off: tests/test_stateful.py covers it)."""
    windows = RuntimeOptions(SMALL.chunk_frames, SMALL.first_chunk_frames, stateful_vocoder=False)
    streamed = ttsstack.load(tiny_vocoder_compiled, backend, options=windows, compile_if_needed=False)
    assert streamed.vocoder.block.twin is None
    whole = ttsstack.load(tiny_vocoder_compiled, backend, options=WHOLE, compile_if_needed=False, warmup=False)
    chunks = list(streamed.stream_audio(TEXT))
    audio = np.concatenate(chunks)
    assert len(chunks) > 10
    assert audio.shape == (streamed.synthesize(TEXT).shape[0] * SAMPLES_PER_FRAME,)
    assert _error(audio, whole.synthesize_audio(TEXT)) <= STREAMING.atol
    assert _error(audio, reference) <= WAVEFORM.atol


def test_vocoder_network_replaces_griffin_lim_by_default(tiny_vocoder_compiled):
    voice = ttsstack.load(tiny_vocoder_compiled, "eager", compile_if_needed=False, warmup=False)
    assert voice.spec.vocoder == {"type": "Network"}
    assert voice.vocoder.networks == ("vocoder",)
    without = tiny_spec()
    without.pop("vocoder")
    assert parse_spec(without).vocoder == {"type": "GriffinLim"}  # no vocoder network: Griffin-Lim


def test_griffin_lim_stays_selectable_over_the_vocoder_network(tiny_vocoder_compiled):
    options = RuntimeOptions(vocoder="GriffinLim")
    voice = ttsstack.load(tiny_vocoder_compiled, "cpu", options=options, compile_if_needed=False, warmup=False)
    assert voice.vocoder.networks == ()
    mel = voice.synthesize(TEXT)
    audio = voice.synthesize_audio(TEXT)
    assert_array_equal(audio, GriffinLim(mel_settings(voice.spec.audio)).vocode(mel))


def test_an_unknown_vocoder_option_is_named(tiny_vocoder_compiled, tmp_path, capsys):
    with pytest.raises(StackError, match="vocoder.type: unknown vocoder 'Nope'"):
        ttsstack.load(tiny_vocoder_compiled, "eager", options=RuntimeOptions(vocoder="Nope"), compile_if_needed=False)
    wav = tmp_path / "out.wav"
    assert main(["synthesize", "--addon", str(tiny_vocoder_compiled), "--vocoder", "Nope", "-o", str(wav)]) == 2
    assert "vocoder.type: unknown vocoder 'Nope'" in capsys.readouterr().err and not wav.exists()


def test_too_small_a_context_shows_as_a_streaming_mismatch(tiny_vocoder_compiled):
    eager = ttsstack.load(tiny_vocoder_compiled, "eager", compile_if_needed=False, warmup=False)
    spec = vocoder_spec()
    spec["networks"]["vocoder"]["context"] = CONTEXT - 2
    wrong = parse_spec(spec)
    runners = dict(eager.runners, vocoder=ModuleRunner(wrong.networks["vocoder"], eager.runners["vocoder"].module))
    streamed = Voice(wrong, runners, options=SMALL).synthesize_audio(TEXT)
    whole = Voice(wrong, runners, options=WHOLE).synthesize_audio(TEXT)
    assert _error(streamed, whole) > 100 * STREAMING.atol


def test_masked_convolutions_make_padding_exact():
    masked = tiny_hifigan()
    mel = torch.randn(1, 13, N_MELS)
    padded = torch.cat([mel, torch.zeros(1, 19, N_MELS)], dim=1)
    mask = (torch.arange(32) < 13).float().unsqueeze(0)
    with torch.no_grad():
        want = masked(mel, torch.ones(1, 13))
        got = masked(padded, mask)[:, : 13 * SAMPLES_PER_FRAME]
        unmasked = masked.module(padded)[:, : 13 * SAMPLES_PER_FRAME]
    assert torch.equal(want, masked.module(mel))
    assert (got - want).abs().max() <= 1e-6
    assert (unmasked - want).abs().max() > 1e-3  # what the mask is for


def test_masked_convolutions_need_a_convolution():
    with pytest.raises(ValueError, match="Linear has no Conv1d/ConvTranspose1d layer to mask"):
        MaskedConvolutions(torch.nn.Linear(2, 2))


def test_static_backend_refuses_a_vocoder_without_mask():
    spec = NetworkSpec.model_validate(vocoder_entry(mask=False))
    with pytest.raises(BackendError, match="declare `mask: INPUT`.*MaskedConvolutions"):
        OnnxStaticBackend().buckets(spec, {"T_frames": DimSpec(max=4096, buckets=[32, 64])})


def _spec_with(entry: dict, **top) -> dict:
    spec = vocoder_spec()
    spec["networks"]["vocoder"] = entry
    spec.update(top)
    return spec


def test_vocoder_with_another_data_input_is_refused():
    entry = vocoder_entry()
    entry["inputs"]["speaker"] = {"shape": [1, 4]}
    with pytest.raises(StackError, match="vocoder: .*must take one frame input.*takes mel, speaker"):
        plan_stack(parse_spec(_spec_with(entry)))


def test_vocoder_channels_must_match_the_stack_frames():
    entry = vocoder_entry()
    entry["inputs"]["mel"]["shape"] = [1, "T_frames", N_MELS + 1]
    with pytest.raises(StackError, match=f"takes {N_MELS + 1} channels per frame, but the stack's stream 'mel'.* has {N_MELS}"):
        plan_stack(parse_spec(_spec_with(entry)))


def test_unknown_vocoder_network_is_named():
    with pytest.raises(StackError, match="vocoder.network: unknown network 'hifigan'"):
        plan_stack(parse_spec(_spec_with(vocoder_entry(), vocoder={"type": "Network", "network": "hifigan"})))


def test_griffin_lim_refuses_frames_that_are_not_mel():
    spec = tiny_spec()
    spec["audio"] = {**spec["audio"], "n_mels": N_MELS + 2}
    with pytest.raises(StackError, match=f"GriffinLim.*has {N_MELS} channels, but Griffin-Lim takes audio.n_mels = {N_MELS + 2}"):
        plan_stack(parse_spec(spec))


def test_a_vocoder_block_inside_the_stack_is_refused():
    spec = vocoder_spec()
    spec["stack"][0]["streamable_block"]["stack"].append({"type": "Vocoder"})
    with pytest.raises(StackError, match="must end in frames .* goes in the addon's `vocoder:` entry"):
        plan_stack(parse_spec(spec))


def test_the_plain_module_streams_differently_from_a_too_short_window():
    """The declared radius is tight: one frame less of context already changes samples."""
    module = TinyHifiGan()
    mel = torch.randn(1, 40, N_MELS)
    with torch.no_grad():
        whole = module(mel)[:, 20 * SAMPLES_PER_FRAME : 21 * SAMPLES_PER_FRAME]
        exact = module(mel[:, 20 - CONTEXT : 21 + CONTEXT])[:, CONTEXT * SAMPLES_PER_FRAME : (CONTEXT + 1) * SAMPLES_PER_FRAME]
        short = module(mel[:, 21 - CONTEXT : 20 + CONTEXT])[:, (CONTEXT - 1) * SAMPLES_PER_FRAME : CONTEXT * SAMPLES_PER_FRAME]
    assert (exact - whole).abs().max() <= 1e-6
    assert (short - whole).abs().max() > 1e-6


def _unbounded_voice(eager: Voice, frames_max: int | None = None, options: RuntimeOptions = SMALL) -> Voice:
    """The tiny vocoder voice with its vocoder network declared ``context: unbounded`` (and ``T_frames`` capped)."""
    spec = vocoder_spec()
    spec["networks"]["vocoder"]["context"] = "unbounded"
    if frames_max is not None:
        spec["dims"]["T_frames"]["max"] = frames_max
    spec = parse_spec(spec)
    runners = dict(eager.runners, vocoder=ModuleRunner(spec.networks["vocoder"], eager.runners["vocoder"].module))
    return Voice(spec, runners, options=options)


def _vocoded_per_chunk(voice: Voice, frames: list[np.ndarray]) -> np.ndarray:
    module = voice.runners["vocoder"].module
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(f)[None], torch.ones(1, len(f))).reshape(-1).numpy() for f in frames])


def test_an_unbounded_vocoder_speaks_each_piece_once_it_is_decoded(tiny_vocoder_compiled):
    """Unbounded context: one run per sentence (not one at the end of the text), each on the sentence's whole frames."""
    eager = ttsstack.load(tiny_vocoder_compiled, "eager", compile_if_needed=False, warmup=False)
    voice = _unbounded_voice(eager)
    frames = list(voice.stream(TEXT))
    assert len(frames) == 2  # the two sentences, each gathered whole though the stack streams small chunks
    chunks = list(voice.stream_audio(TEXT))
    assert [len(c) for c in chunks] == [len(f) * SAMPLES_PER_FRAME for f in frames]
    assert _error(np.concatenate(chunks), _vocoded_per_chunk(voice, frames)) <= 1e-6
    whole = _unbounded_voice(eager, options=WHOLE).synthesize_audio(TEXT)
    assert _error(np.concatenate(chunks), whole) <= STREAMING.atol


def test_a_piece_longer_than_an_unbounded_vocoder_takes_is_split(tiny_vocoder_compiled):
    """Past the vocoder's dim max the piece's tokens are split at word boundaries, as for an unbounded decoder."""
    eager = ttsstack.load(tiny_vocoder_compiled, "eager", compile_if_needed=False, warmup=False)
    longest = max(len(f) for f in _unbounded_voice(eager).stream(TEXT))
    capped = _unbounded_voice(eager, frames_max=longest - 1)
    frames = list(capped.stream(TEXT))
    assert len(frames) > 2 and max(len(f) for f in frames) <= longest - 1
    assert _error(np.concatenate(list(capped.stream_audio(TEXT))), _vocoded_per_chunk(capped, frames)) <= 1e-6


VOICES = {"low": [0.0, 0.0, 0.0, -0.5], "high": [0.25, 0.25, 0.25, 0.25]}


def _speaker_voice(eager: Voice, options: RuntimeOptions = SMALL) -> Voice:
    """The tiny vocoder voice with a ``speaker:`` entry whose embedding only the vocoder reads: it scales the waveform."""
    spec = vocoder_spec()
    spec["speaker"] = {"input": "speaker", "dim": 4, "voices": VOICES}
    spec["networks"]["vocoder"]["inputs"]["speaker"] = {"shape": [1, 4]}
    spec = parse_spec(spec)
    base = eager.runners["vocoder"].module
    conditioned = ModuleRunner(spec.networks["vocoder"], lambda mel, mel_mask, speaker: base(mel, mel_mask) * (1 + speaker.sum()))
    return Voice(spec, dict(eager.runners, vocoder=conditioned), options=options)


def test_a_vocoder_network_reads_the_calls_speaker_embedding(tiny_vocoder_compiled):
    """A multi-speaker vocoder (VITS's decoder, a speaker-conditioned HiFi-GAN) gets the call's embedding with every window."""
    eager = ttsstack.load(tiny_vocoder_compiled, "eager", compile_if_needed=False, warmup=False)
    plain = eager.synthesize_audio(TEXT)
    voice = _speaker_voice(eager)
    for name, embedding in VOICES.items():
        streamed = np.concatenate(list(voice.stream_audio(TEXT, speaker=name)))
        assert _error(streamed, plain * (1 + sum(embedding))) <= STREAMING.atol
    custom = np.concatenate(list(voice.stream_audio(TEXT, speaker=[1.0, 0.0, 0.0, 0.0])))
    assert _error(custom, plain * 2) <= STREAMING.atol
    assert _error(voice.synthesize_audio(TEXT), plain * 0.5) <= STREAMING.atol  # the first voice by default


def test_a_vocoder_input_of_the_wrong_shape_for_the_speaker_is_refused():
    spec = vocoder_spec()
    spec["speaker"] = {"input": "speaker", "dim": 4, "voices": VOICES}
    spec["networks"]["vocoder"]["inputs"]["speaker"] = {"shape": [1, 4, 1]}
    with pytest.raises(StackError, match="speaker"):
        plan_stack(parse_spec(spec))
