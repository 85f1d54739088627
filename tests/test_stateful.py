"""Stateful streaming of convolutional vocoders: the twin compile derives equals the whole run, chunk by chunk.

Unit tests export tiny networks of the shapes real vocoders have (HiFi-GAN's
transposed convolutions, dilations and residual sums, a mask, a speaker
input, ConvNeXt blocks of Vocos's backbone), derive the twin and stream it
through the runtime's :func:`~ttsstack.runtime.stateful.stream_stateful` at
several chunkings; networks that mix steps otherwise are refused by name.
The compiled tiny vocoder addon checks the compile and the loader.
"""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional as F

import ttsstack
from ttsstack.addon import NetworkSpec
from ttsstack.backends.base import ModuleRunner
from ttsstack.cli import main
from ttsstack.compiler import compile_addon, read_manifest
from ttsstack.compiler.stateful import NotStreamable, StatefulNetwork, plan_for, plan_program, stateful_program, stateful_spec
from ttsstack.masking import MaskedConvolutions
from ttsstack.parity import WHOLE
from ttsstack.recurrent import recurrent_as_ops
from ttsstack.runtime import RuntimeOptions
from ttsstack.runtime.stateful import stream_stateful
from ttsstack.tolerances import STREAMING

from .tiny_vocoder import SAMPLES_PER_FRAME, TinyHifiGan

N_MELS, SPEAKER = 8, 4
TEXT = "A text long enough for many vocoder windows, across two sentences. Here is the second one!"


class SpeakerHifiGan(TinyHifiGan):
    """TinyHifiGan with a speaker embedding added after conv_pre (a multi-speaker HiFi-GAN's conditioning), and
    its residual sums in place (``x += ...``, as Hugging Face's HiFi-GAN writes them)."""

    def __init__(self):
        super().__init__()
        self.speaker = nn.Linear(SPEAKER, 16)

    def forward(self, mel: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel.transpose(1, 2)) + self.speaker(speaker).unsqueeze(-1)
        for up, res in zip(self.ups, self.resblocks):
            x = up(F.leaky_relu(x, 0.1))
            x += res(F.leaky_relu(x, 0.1))
        return torch.tanh(self.conv_post(F.leaky_relu(x))).squeeze(1)


class LengthsHifiGan(TinyHifiGan):
    """TinyHifiGan that builds its own mask from an int32 ``lengths`` input (``arange(T) < lengths``) and zeroes
    conv_pre's input with it, as models with a lengths input do."""

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        keep = (torch.arange(mel.shape[1]) < lengths.unsqueeze(-1)).to(mel.dtype)
        return super().forward(mel * keep.unsqueeze(-1))


class ConvNeXtVocoder(nn.Module):
    """Vocos's backbone shape: conv embed, ConvNeXt blocks (depthwise conv 'same', LayerNorm and MLP over
    channels, residual), a linear head to 4 samples per frame."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv1d(N_MELS, 12, 7, padding=3)
        self.dwconv = nn.ModuleList([nn.Conv1d(12, 12, 7, padding="same", groups=12) for _ in range(2)])
        self.norm = nn.ModuleList([nn.LayerNorm(12) for _ in range(2)])
        self.mlp = nn.ModuleList([nn.Sequential(nn.Linear(12, 24), nn.GELU(), nn.Linear(24, 12)) for _ in range(2)])
        self.head = nn.Linear(12, 4)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.embed(mel.transpose(1, 2))
        for dwconv, norm, mlp in zip(self.dwconv, self.norm, self.mlp):
            x = x + mlp(norm(dwconv(x).transpose(1, 2))).transpose(1, 2)
        return self.head(x.transpose(1, 2)).reshape(1, -1)


def _entry(speaker: bool = False, mask: bool = False, lengths: bool = False) -> dict:
    inputs = {"mel": {"shape": [1, "T_frames", N_MELS]}}
    if mask:
        inputs["mel_mask"] = {"shape": [1, "T_frames"]}
    if lengths:
        inputs["mel_lengths"] = {"shape": [1], "dtype": "int32"}
    if speaker:
        inputs["speaker"] = {"shape": [1, SPEAKER]}
    entry = {"role": "vocoder", "file": "networks/vocoder.pt2", "context": 8, "inputs": inputs,
             "outputs": {"audio": {"shape": [1, "T_samples"]}}}
    return entry | ({"mask": "mel_mask"} if mask else {}) | ({"lengths": "mel_lengths"} if lengths else {})


def _export(module: nn.Module, entry: dict) -> torch.export.ExportedProgram:
    torch.manual_seed(0)
    module.eval()
    frames = torch.export.Dim("T_frames", min=2, max=512)
    examples = {"mel": torch.randn(1, 20, N_MELS), "mel_mask": torch.ones(1, 20), "speaker": torch.randn(1, SPEAKER),
                "mel_lengths": torch.tensor([20], dtype=torch.int32)}
    names = list(entry["inputs"])
    shapes = tuple({1: frames} if n in ("mel", "mel_mask") else None for n in names)
    with recurrent_as_ops(module):  # as write_addon exports an LSTM, its time axis dynamic
        return torch.export.export(module, tuple(examples[n] for n in names), dynamic_shapes=shapes,
                                   prefer_deferred_runtime_asserts_over_guards=True)


def _streamed(program, entry: dict, mel: torch.Tensor, chunks: list[int], extra: dict, largest: int = 512,
              sizes: list[int] | None = None) -> torch.Tensor:
    """The twin (run eagerly) through the runtime's driver on ``mel`` arriving in ``chunks``, fed in ``sizes``
    (default: as it arrives)."""
    spec = NetworkSpec.model_validate(entry)
    source = program.module()
    plan = plan_for(spec, source, "mel")
    twin = stateful_spec("vocoder", spec, plan, "networks/vocoder_stateful.pt2")
    runner = ModuleRunner(twin, StatefulNetwork(source, plan))
    bounds = np.cumsum([0, *chunks])
    upstream = (mel[:, a:b] for a, b in zip(bounds[:-1], bounds[1:]))
    with torch.no_grad():
        schedule = itertools.chain(sizes or chunks, itertools.repeat(largest))
        return torch.cat(list(stream_stateful(runner, twin, "mel", upstream, extra, schedule, largest)), dim=-1)


def _whole(program, entry: dict, mel: torch.Tensor, extra: dict) -> torch.Tensor:
    inputs = {"mel": mel, "mel_mask": torch.ones(1, mel.shape[1]),
              "mel_lengths": torch.tensor([mel.shape[1]], dtype=torch.int32), **extra}
    with torch.no_grad():
        return program.module()(*(inputs[n] for n in entry["inputs"]))


CHUNKINGS = {"one frame at a time": [1] * 23, "uneven": [5, 1, 9, 8], "whole": [23]}


@pytest.mark.parametrize("chunks", list(CHUNKINGS.values()), ids=list(CHUNKINGS))
@pytest.mark.parametrize("case", ["hifigan", "masked", "speaker", "lengths", "convnext"])
def test_streamed_twin_equals_the_whole_run(case, chunks):
    module, entry = {
        "hifigan": (TinyHifiGan(), _entry()),
        "masked": (MaskedConvolutions(TinyHifiGan()), _entry(mask=True)),
        "speaker": (SpeakerHifiGan(), _entry(speaker=True)),
        "lengths": (LengthsHifiGan(), _entry(lengths=True)),
        "convnext": (ConvNeXtVocoder(), _entry()),
    }[case]
    program = _export(module, entry)
    mel = torch.randn(1, sum(chunks), N_MELS)
    extra = {"speaker": torch.randn(1, SPEAKER)} if case == "speaker" else {}
    got, want = _streamed(program, entry, mel, chunks, extra), _whole(program, entry, mel, extra)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= STREAMING.atol


def test_frames_arriving_whole_go_in_as_the_schedule_says():
    """A piece that arrives whole (an unbounded decoder's) is vocoded a small chunk at a time, exactly."""
    program = _export(TinyHifiGan(), _entry())
    mel = torch.randn(1, 40, N_MELS)
    calls = []
    original = StatefulNetwork.forward

    def counted(self, *args):
        calls.append(args[0].shape[1])
        return original(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StatefulNetwork, "forward", counted)
        got = _streamed(program, _entry(), mel, [40], {}, sizes=[6, 8, 16])
    assert calls[:4] == [6, 8, 16, 10]  # then the flush
    want = _whole(program, _entry(), mel, {})
    assert got.shape == want.shape and float((got - want).abs().max()) <= STREAMING.atol


def test_a_masked_network_zeroes_the_steps_outside_the_sequence_itself():
    """MaskedConvolutions multiplies every convolution's input by the mask: the twin adds no zeroing of its own."""
    from ttsstack.compiler.stateful import Convolution

    for module, entry, masked in ((MaskedConvolutions(TinyHifiGan()), _entry(mask=True), True), (TinyHifiGan(), _entry(), False)):
        plan = plan_for(NetworkSpec.model_validate(entry), _export(module, entry).module(), "mel")
        convolutions = [a for a in plan.actions.values() if isinstance(a, Convolution)]
        assert len(convolutions) == 6 and all(c.masked == masked for c in convolutions)


def test_a_text_shorter_than_the_delay_and_chunks_over_the_largest_call():
    program = _export(TinyHifiGan(), _entry())
    plan = plan_program(program.module(), 0)
    assert plan.output.delay > SAMPLES_PER_FRAME  # more than one frame's samples late
    for frames, largest in ((2, 512), (17, 3)):
        mel = torch.randn(1, frames, N_MELS)
        got, want = _streamed(program, _entry(), mel, [frames], {}, largest), _whole(program, _entry(), mel, {})
        assert got.shape == want.shape and float((got - want).abs().max()) <= STREAMING.atol


class Attention(nn.Module):
    def forward(self, mel):
        return torch.softmax(mel @ mel.transpose(1, 2), dim=-1) @ mel


class Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, N_MELS, batch_first=True)

    def forward(self, mel):
        return self.lstm(mel)[0]


class ReflectPad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(N_MELS, N_MELS, 3)

    def forward(self, mel):
        return self.conv(F.pad(mel.transpose(1, 2), (1, 1), mode="reflect"))


class MeanOverTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(N_MELS, N_MELS, 3, padding=1)

    def forward(self, mel):
        x = self.conv(mel.transpose(1, 2))
        return x - x.mean(dim=-1, keepdim=True)


class Strided(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(N_MELS, N_MELS, 4, stride=2, padding=1)

    def forward(self, mel):
        return self.conv(mel.transpose(1, 2))


@pytest.mark.parametrize(("module", "reason"), [
    (Attention(), "more than one axis along time"),
    (Lstm(), "reduces along time"),  # its zero state: the first step of the input, selected
    (ReflectPad(), "node pad .* not a whole number of steps per frame"),
    (MeanOverTime(), "reduces along time"),
    (Strided(), "node conv1d .* not a whole number of steps per frame"),
], ids=["attention", "lstm", "reflect pad", "mean over time", "strided"])
def test_networks_that_mix_steps_otherwise_are_refused_by_name(module, reason):
    program = _export(module, _entry())
    with pytest.raises(NotStreamable, match=reason) as caught:
        plan_program(program.module(), 0)
    assert "node " in str(caught.value)  # names the operator at fault


def test_a_batch_network_gets_no_twin(tiny_vocoder_compiled):
    addon = ttsstack.load_addon(tiny_vocoder_compiled)
    data = addon.spec.to_dict()
    data["networks"]["vocoder"]["batch"] = True
    from ttsstack.addon import parse_spec

    with pytest.raises(NotStreamable, match="batch network"):
        stateful_program(parse_spec(data), "vocoder", addon.load_program("vocoder"), "mel", "networks/x.pt2")


def test_compile_adds_the_twin_for_dynamic_backends_only(tiny_vocoder_compiled):
    spec = ttsstack.load_addon(tiny_vocoder_compiled).spec
    twin = spec.networks["vocoder_stateful"]
    assert twin.stateful.of == "vocoder" and twin.stateful.delay > 0 and twin.states
    backends = {a.backend for a in read_manifest(tiny_vocoder_compiled).artifacts if a.network == "vocoder_stateful"}
    assert backends == {"cpu", "onnx"}  # static backends (onnx-static, neuron) keep the windows


def test_recompile_reuses_the_twin_without_exporting_it_again(tiny_vocoder_compiled, tmp_path, capsys):
    compiled = tmp_path / "compiled"
    shutil.copytree(tiny_vocoder_compiled, compiled)
    twin_file = compiled / "networks" / "vocoder_stateful.pt2"
    before = (twin_file.stat().st_mtime_ns, twin_file.read_bytes())
    assert main(["compile", str(compiled), "-o", str(compiled), "--backend", "onnx", "-q"]) == 0
    out = capsys.readouterr().out
    assert "vocoder: streams by stateful twin 'vocoder_stateful'" in out and "nothing to compile" in out
    assert (twin_file.stat().st_mtime_ns, twin_file.read_bytes()) == before


def test_a_later_derivation_derives_the_twin_again(tiny_vocoder_compiled, tmp_path, monkeypatch):
    from ttsstack.compiler import driver

    compiled = tmp_path / "compiled"
    shutil.copytree(tiny_vocoder_compiled, compiled)
    exported = []
    monkeypatch.setattr(driver, "DERIVATION", driver.DERIVATION + 1)
    monkeypatch.setattr(driver, "stateful_program", lambda *args: exported.append(args[1]) or stateful_program(*args))
    compile_addon(compiled, compiled, ["onnx"], progress=False)
    assert exported == ["vocoder"]


@pytest.mark.parametrize("backend", ["cpu", "onnx", "onnx-static"])
def test_the_runtime_streams_through_the_twin_where_the_backend_has_it(tiny_vocoder_compiled, backend):
    small = RuntimeOptions(chunk_frames=16, first_chunk_frames=4)
    voice = ttsstack.load(tiny_vocoder_compiled, backend, options=small, compile_if_needed=False, warmup=False)
    windows = ttsstack.load(tiny_vocoder_compiled, backend, options=RuntimeOptions(16, 4, stateful_vocoder=False),
                            compile_if_needed=False, warmup=False)
    whole = ttsstack.load(tiny_vocoder_compiled, "eager", options=WHOLE, compile_if_needed=False, warmup=False)
    assert (voice.vocoder.block.twin == "vocoder_stateful") == (backend != "onnx-static")
    assert windows.vocoder.block.twin is None
    audio = voice.synthesize_audio(TEXT)
    assert audio.shape == (voice.synthesize(TEXT).shape[0] * SAMPLES_PER_FRAME,)
    assert float(np.abs(audio - whole.synthesize_audio(TEXT)).max()) <= STREAMING.atol
    assert float(np.abs(audio - windows.synthesize_audio(TEXT)).max()) <= STREAMING.atol


def test_cli_flag_turns_the_twin_off(tiny_vocoder_compiled, tmp_path):
    import soundfile

    for flag in ("--stateful-vocoder", "--no-stateful-vocoder"):
        args = ["synthesize", "--addon", str(tiny_vocoder_compiled), "--backend", "onnx", "--text", "Hello there.",
                flag, "-o", str(tmp_path / f"{flag}.wav")]
        assert main(args) == 0
    on, _ = soundfile.read(tmp_path / "--stateful-vocoder.wav", dtype="float32")
    off, _ = soundfile.read(tmp_path / "--no-stateful-vocoder.wav", dtype="float32")
    assert on.shape == off.shape and float(np.abs(on - off).max()) <= 1e-4  # 16-bit WAV: one quantisation step


def _copy_without_twin(tiny_vocoder_compiled, tmp_path):
    compiled = tmp_path / "compiled"
    shutil.copytree(tiny_vocoder_compiled, compiled)
    spec = ttsstack.load_addon(compiled).spec.to_dict()
    del spec["networks"]["vocoder_stateful"]
    (compiled / "addon.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (compiled / "networks" / "vocoder_stateful.pt2").unlink()  # the next compile derives it again
    return compiled


def test_a_twin_that_fails_to_export_leaves_the_vocoder_on_windows(tiny_vocoder_compiled, tmp_path, monkeypatch):
    from ttsstack.compiler import driver

    def broken(*args, **kwargs):
        raise RuntimeError("exporter bug\nwith a traceback")

    monkeypatch.setattr(driver, "stateful_program", broken)
    compiled = _copy_without_twin(tiny_vocoder_compiled, tmp_path)
    report = compile_addon(compiled, compiled, ["onnx"], progress=False)
    assert report.streaming["vocoder"] == "overlapping windows (the twin failed to export: RuntimeError: exporter bug)"
    voice = ttsstack.load(compiled, "onnx", compile_if_needed=False, warmup=False)
    assert "vocoder_stateful" not in voice.spec.networks and voice.vocoder.block.twin is None
    assert voice.synthesize_audio("Hello there.").size


def test_a_full_disk_while_writing_the_twin_is_a_compile_error_naming_it(tiny_vocoder_compiled, tmp_path, monkeypatch):
    import errno

    from ttsstack.compiler import CompileError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    compiled = _copy_without_twin(tiny_vocoder_compiled, tmp_path)
    monkeypatch.setattr(torch.export, "save", full)
    with pytest.raises(CompileError, match=r"vocoder_stateful\.pt2.*No space left on device"):
        compile_addon(compiled, compiled, ["onnx"], progress=False)
    assert not list((compiled / "networks").glob("vocoder_stateful*"))  # nothing half-written left behind


@pytest.mark.parametrize(("field", "value", "message"), [
    ("of", "nowhere", r"stateful\.of: 'nowhere' is not a network"),
    ("output", "nothing", r"stateful\.output: 'nothing' is not an output"),
    ("start", "mel", r"stateful\.start: 'mel' must be an int64 input of shape \[1\]"),
    ("delay", -1, r"stateful\.delay"),
])
def test_a_tampered_stateful_entry_is_refused_naming_it(tiny_vocoder_compiled, field, value, message):
    from ttsstack.addon import AddonError, parse_spec

    data = ttsstack.load_addon(tiny_vocoder_compiled).spec.to_dict()
    data["networks"]["vocoder_stateful"]["stateful"][field] = value
    with pytest.raises(AddonError, match=rf"networks\.vocoder_stateful\.{message}"):
        parse_spec(data)
