"""The ttsstack command, run in-process: synthesize round trip, inspect, compile."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ttsstack.cli import main


def test_synthesize_writes_a_wav_and_mel(demo_compiled, tmp_path, capsys):
    wav, mel = tmp_path / "out.wav", tmp_path / "mel.npy"
    code = main(["synthesize", "--addon", str(demo_compiled), "--text", "Hello there, world.", "-o", str(wav), "--mel-out", str(mel)])
    assert code == 0
    audio, rate = sf.read(wav)
    assert rate == 22050
    assert np.abs(audio).max() > 0.01  # not silent
    saved = np.load(mel)
    assert saved.dtype == np.float32 and saved.shape[1] == 80
    assert len(audio) == len(saved) * 256
    out = capsys.readouterr().out
    assert "first audio chunk" in out and "real-time factor" in out


def test_inspect_prints_networks_blocks_and_artifacts(demo_compiled, capsys):
    assert main(["inspect", str(demo_compiled)]) == 0
    out = capsys.readouterr().out
    for text in ("text_encoder [encoder, context 6]", "StreamablePipeline", "Upsampler", "Decoder decoder", "artifacts:", "cpu"):
        assert text in out


def test_compile_twice_says_up_to_date(tiny_addon, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["compile", str(tiny_addon), "-o", str(out), "--backend", "cpu", "-q"]) == 0
    assert main(["compile", str(tiny_addon), "-o", str(out), "--backend", "cpu", "-q"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_bad_addon_is_a_clean_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not an addon folder" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_synthesize_and_inspect_the_tacotron_addon(tacotron_compiled, tmp_path, capsys):
    wav = tmp_path / "taco.wav"
    assert main(["synthesize", "--addon", str(tacotron_compiled), "--text", "Hello there.", "-o", str(wav)]) == 0
    audio, rate = sf.read(wav)
    assert rate == 22050 and len(audio) > 0
    assert main(["inspect", str(tacotron_compiled)]) == 0
    out = capsys.readouterr().out
    for text in ("decoder_step [decoder_step, context unbounded]", "AutoregressiveDecoder decoder_step [8 states",
                 "Postnet postnet [context 10]"):
        assert text in out
