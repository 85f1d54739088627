"""Parity: the demo addon (mel and its vocoder network's waveform) on every test backend matches the eager reference; the command's table and exit status."""

from __future__ import annotations

import pytest

from ttsstack import parity
from ttsstack.cli import main
from ttsstack.tolerances import WAVEFORM, Tolerance

from .conftest import TEST_BACKENDS


@pytest.fixture(scope="module")
def demo_report(demo_compiled):
    return parity.check_parity(demo_compiled)


def test_demo_matches_the_reference_on_every_backend(demo_report):
    assert demo_report.passed, demo_report.table()
    stages = ["text_encoder", "duration_encoder", "decoder", "vocoder", "mel, whole", "audio, whole", "mel, streamed", "audio, streamed"]
    assert [(r.backend, r.stage) for r in demo_report.rows] == [(b, s) for b in sorted(TEST_BACKENDS) for s in stages]
    assert demo_report.skipped == {}
    assert all(r.tolerance == WAVEFORM for r in demo_report.rows if r.stage.startswith("audio"))
    assert len(parity.DEFAULT_TEXTS[-1]) > 256  # past the demo's largest T_text bucket: static encoders run windows


def test_parity_command_prints_the_table(tiny_compiled, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("Hi.\n\nA second, longer line of text.\n")
    assert main(["parity", str(tiny_compiled), "--backend", "cpu,onnx-static", "--texts", str(texts)]) == 0
    out = capsys.readouterr().out
    assert "parity against the eager reference on 2 text(s)" in out
    assert "onnx-static: ONNX Runtime CPUExecutionProvider" in out
    assert "onnx-static  mel, streamed" in out and "all 10 checks passed" in out


def test_parity_command_fails_beyond_tolerance(tiny_compiled, monkeypatch, capsys):
    monkeypatch.setattr(parity, "for_backend", lambda *args, **kwargs: Tolerance(atol=0.0, rtol=0.0))
    assert main(["parity", str(tiny_compiled), "--backend", "onnx"]) == 1
    out = capsys.readouterr().out
    assert "onnx         mel, whole" in out and "FAIL" in out and "check(s) failed" in out


def test_parity_names_the_compile_command_for_a_missing_backend(tiny_addon, tmp_path, capsys):
    from ttsstack.compiler import compile_addon

    out = tmp_path / "cpu-only"
    compile_addon(tiny_addon, out, ["cpu"], progress=False)
    assert main(["parity", str(out), "--backend", "onnx"]) == 2
    assert "run: ttsstack compile SOURCE_ADDON -o" in capsys.readouterr().err


def test_vocoder_network_waveform_matches_the_reference_on_every_backend(tiny_vocoder_compiled):
    report = parity.check_parity(tiny_vocoder_compiled, texts=parity.DEFAULT_TEXTS[:2])
    assert report.passed, report.table()
    stages = ["decoder", "duration_encoder", "text_encoder", "vocoder", "mel, whole", "audio, whole", "mel, streamed", "audio, streamed"]
    twin = [(b, "vocoder_stateful") for b in ("cpu", "onnx")]  # the dynamic backends stream through the stateful twin
    assert sorted((r.backend, r.stage) for r in report.rows) == sorted([(b, s) for b in TEST_BACKENDS for s in stages] + twin)
    assert all(r.tolerance == WAVEFORM for r in report.rows if r.stage.startswith("audio"))


def test_a_spectrum_comparison_holds_a_chaotic_phase_and_refuses_a_gain():
    """``compare: spectrum``: a waveform whose phase drifted (a chaotic sine source) passes where samples fail."""
    import numpy as np
    import torch

    from ttsstack.audio import MelSettings
    from ttsstack.tolerances import SPECTRUM

    settings = MelSettings(sample_rate=16000, n_fft=512, hop_length=128, win_length=512, n_mels=40, fmin=0.0, fmax=8000.0)
    t = np.arange(16000) / 16000
    envelope = 0.3 * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    want = torch.from_numpy(envelope * np.sin(2 * np.pi * 180 * t))
    drifted = torch.from_numpy(envelope * np.sin(2 * np.pi * 180 * t + 0.8 + 0.5 * t))  # phase off by 0.8-1.3 rad
    assert not WAVEFORM.passes((drifted - want).abs().max().item(), 0.0)

    same = parity._SpectralErrors(settings)
    same.add(drifted[None], want[None], "drifted")
    assert same.passed and same.max_abs < SPECTRUM.atol, same.max_abs
    louder = parity._SpectralErrors(settings)
    louder.add(want[None] * 1.25, want[None], "louder")
    assert not louder.passed and louder.max_abs > SPECTRUM.atol
    shorter = parity._SpectralErrors(settings)
    shorter.add(want[None, :-128], want[None], "shorter")
    assert not shorter.passed and "shape" in shorter.detail


def test_compare_spectrum_is_for_vocoder_networks_only():
    from ttsstack.addon import NetworkSpec

    entry = {"file": "n.pt2", "inputs": {"x": {"shape": [1, "T", 2]}}, "outputs": {"y": {"shape": [1, "T", 2]}}, "compare": "spectrum"}
    assert NetworkSpec.model_validate({**entry, "role": "vocoder"}).compare == "spectrum"
    with pytest.raises(ValueError, match="compare: 'spectrum' is for a waveform.*role is 'decoder'"):
        NetworkSpec.model_validate({**entry, "role": "decoder"})
