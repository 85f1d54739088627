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
    assert sorted((r.backend, r.stage) for r in report.rows) == sorted((b, s) for b in TEST_BACKENDS for s in stages)
    assert all(r.tolerance == WAVEFORM for r in report.rows if r.stage.startswith("audio"))
