"""The ttsstack command, run in-process: synthesize round trip, inspect, compile."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import soundfile as sf

import ttsstack
from ttsstack.cli import build_parser, main
from ttsstack.cliflags import add_deprecated_alias


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
    assert "first audio chunk" in out and "RTF" in out and "than real time" in out


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
    for text in ("decoder_step [decoder_step, context unbounded, batch]", "AutoregressiveDecoder decoder_step [8 states",
                 "Postnet postnet [context 10]"):
        assert text in out


def _all_parsers():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, subs.choices


def test_help_is_plain_text_and_every_option_explains_itself(capsys):
    parser, commands = _all_parsers()
    assert "``" not in parser.format_help() and ":class:" not in parser.format_help()
    for name, sub in commands.items():
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:
                continue  # deprecated aliases are hidden
            assert action.help, f"ttsstack {name} {action.option_strings or action.dest}: no help text"
        text = sub.format_help()
        for flag in ("--chunk-frames", "--first-chunk-frames", "--max-input-chars", "--max-body-bytes"):
            if flag in text:
                assert "(default: " in text.split(flag, 2)[-1].split("\n  -")[0], f"{name} {flag}: default not shown"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"ttsstack {ttsstack.__version__}")


def test_list_flags_repeat_and_take_comma_lists_and_old_spellings_warn(capsys):
    parser = build_parser()
    args = parser.parse_args(["compile", "a", "-o", "b", "--backend", "cpu,onnx", "--backend", "eager"])
    assert args.backend == ["cpu", "onnx", "eager"]
    assert parser.parse_args(["compile", "a", "-o", "b"]).backend == ["cpu"]
    assert parser.parse_args(["parity", "c", "--backend", "onnx", "--backend", "cpu"]).backend == ["onnx", "cpu"]
    assert parser.parse_args(["parity", "c", "--backends", "onnx,cpu"]).backend == ["onnx", "cpu"]
    assert "--backends is deprecated" in capsys.readouterr().err
    assert "--backends" not in _all_parsers()[1]["parity"].format_help()  # hidden: the help shows one spelling


def test_the_vocoder_thread_is_on_unless_turned_off():
    parser = build_parser()
    for command in (["serve", "--addon", "x"], ["synthesize", "--text", "Hi."]):
        assert parser.parse_args(command).vocoder_thread
        assert not parser.parse_args([*command, "--no-vocoder-thread"]).vocoder_thread


def test_an_old_spelling_of_a_one_value_flag_sets_the_new_one_and_warns(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    add_deprecated_alias(parser, "--repeats", "--runs", dest="runs", type=int)
    assert parser.parse_args(["--repeats", "3"]).runs == 3
    assert "--repeats is deprecated" in capsys.readouterr().err and "--repeats" not in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--repeats", "three"])  # the type is checked as for --runs


def test_synthesize_says_which_defaults_it_used_and_prints_rtf(tiny_compiled, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["synthesize", "--addon", str(tiny_compiled)]) == 0
    captured = capsys.readouterr()
    assert "no --text given: speaking the demo sentence" in captured.err and "no -o given: writing speech.wav" in captured.err
    assert (tmp_path / "speech.wav").is_file()
    assert re.search(r"RTF \d+\.\d\d \(\d+\.\dx (faster|slower) than real time\)", captured.out)


def test_output_into_a_missing_folder_is_created_and_the_suffix_picks_the_format(tiny_compiled, tmp_path, capsys):
    flac, mel = tmp_path / "new" / "deeper" / "out.flac", tmp_path / "mels" / "m.npy"
    assert main(["synthesize", "--addon", str(tiny_compiled), "--text", "Hi.", "-o", str(flac), "--mel-out", str(mel)]) == 0
    assert sf.info(str(flac)).format == "FLAC" and np.load(mel).shape[1] == 8
    assert f"created folder {tmp_path / 'new'}" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["-o", "out.xyz"], "out.xyz: suffix '.xyz'; audio files are written as .wav, .flac, .ogg, .mp3"),
    (["-o", "noext"], "-o noext: no suffix"),
    (["--mel-out", "mel.txt"], "--mel-out mel.txt: the mel is saved as a NumPy .npy file"),
    (["--mel-out", "blocker/mel.npy"], "--mel-out blocker/mel.npy: blocker is a file, not a folder"),
    (["-o", "blocker.wav"], "-o blocker.wav: is a folder"),
])
def test_a_bad_output_path_is_refused_before_any_work(tmp_path, monkeypatch, capsys, flags, message):
    """Refused before loading: the addon given does not even exist, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    (tmp_path / "blocker.wav").mkdir()
    assert main(["synthesize", "--addon", str(tmp_path / "missing"), "--text", "Hi.", *flags]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "blocker.wav"]
