"""Operator plugins: ``--plugin MODULE`` and the ``ttsstack.plugins`` entry points make a block usable by name."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import yaml

import ttsstack

from ttsstack.cli import main
from ttsstack.compiler import compile_addon
from ttsstack.plugins import PluginError, load_plugins
from ttsstack.runtime import BLOCKS

REPO = Path(__file__).resolve().parent.parent
GAIN_STACK = [{
    "type": "StreamablePipeline",
    "sequence_block": {"type": "Encoders"},
    "streamable_block": {"type": "StreamableStack", "stack": [{"type": "Upsampler"}, {"type": "Decoder"},
                                                              {"type": "Gain", "db": -6.0}]},
}]


@pytest.fixture
def forget_gain():
    """The plugin's registration is process-wide: undo it after each test, so each starts without ``Gain``."""
    yield
    BLOCKS.unregister("Gain")
    sys.modules.pop("tests.plugin_gain", None)


@pytest.fixture
def gain_addon(tiny_compiled, tmp_path) -> Path:
    """The compiled tiny addon whose stack ends in the plugin's ``Gain`` block."""
    folder = tmp_path / "gain"
    shutil.copytree(tiny_compiled, folder)
    data = yaml.safe_load((folder / "addon.yaml").read_text())
    (folder / "addon.yaml").write_text(yaml.safe_dump({**data, "name": "tiny-gain", "stack": GAIN_STACK}, sort_keys=False))
    load_plugins(["tests.plugin_gain"])  # as the operator would: recompile in place with the plugin, re-hashing addon.yaml
    try:
        compile_addon(folder, folder, [], progress=False)
    finally:
        BLOCKS.unregister("Gain")
        sys.modules.pop("tests.plugin_gain", None)
    return folder


def test_a_block_of_no_loaded_plugin_is_unknown(gain_addon, tmp_path, capsys, forget_gain):
    assert main(["synthesize", "--addon", str(gain_addon), "--text", "Hi.", "-o", str(tmp_path / "a.wav")]) == 2
    assert "unknown block type 'Gain'" in capsys.readouterr().err


@pytest.mark.usefixtures("forget_gain")
def test_plugin_flag_makes_the_block_usable_and_it_does_what_its_name_says(tiny_compiled, gain_addon, tmp_path):
    text = "Louder or quieter, the same speech."
    assert main(["synthesize", "--plugin", "tests.plugin_gain", "--addon", str(gain_addon), "--text", text,
                 "-o", str(tmp_path / "quiet.wav")]) == 0
    assert sf.info(str(tmp_path / "quiet.wav")).frames > 0
    # the raw waveforms (the tiny voice is loud enough to clip in a file): -6 dB is half the amplitude
    plain = ttsstack.load(tiny_compiled, "cpu").synthesize_audio(text)
    quiet = ttsstack.load(gain_addon, "cpu").synthesize_audio(text)
    assert len(plain) == len(quiet)
    ratio = np.sqrt(np.mean(quiet.astype(np.float64) ** 2) / np.mean(plain.astype(np.float64) ** 2))
    assert ratio == pytest.approx(10 ** (-6 / 20), rel=0.02)


def test_a_plugin_that_cannot_be_imported_is_named(capsys):
    assert main(["inspect", ".", "--plugin", "no_such_module_here"]) == 2
    err = capsys.readouterr().err
    assert "--plugin no_such_module_here: cannot import it" in err and "ModuleNotFoundError" in err


def test_entry_points_of_the_plugin_group_load(tmp_path, monkeypatch, forget_gain):
    """An installed distribution declaring a ``ttsstack.plugins`` entry point (a dist-info on sys.path) is loaded."""
    dist = tmp_path / "gain_plugin_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gain-plugin-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ttsstack.plugins]\ngain = tests.plugin_gain\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "Gain" not in BLOCKS
    loaded = load_plugins([])
    assert "gain = tests.plugin_gain" in loaded and "Gain" in BLOCKS
    assert load_plugins([], entry_point_group=None) == []


def test_a_broken_entry_point_names_its_package(tmp_path, monkeypatch):
    dist = tmp_path / "broken_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ttsstack.plugins]\nbroken = no_such_plugin_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="entry point 'broken' .* broken-pkg"):
        load_plugins([])


def test_serve_with_plugin_serves_an_addon_using_the_block(gain_addon):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ttsstack.cli", "serve", "--port", "0", "--log-level", "warning",
           "--plugin", "tests.plugin_gain", "--addon", f"{gain_addon}:cpu"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def read_output():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_output, daemon=True).start()
    try:
        url, seen = None, []
        while url is None:
            line = lines.get(timeout=120)
            assert line is not None, "the server exited:\n" + "".join(seen)
            seen.append(line)
            match = re.search(r"serving tiny-gain on (http://127\.0\.0\.1:\d+)", line)
            url = match and match.group(1)
        r = httpx.post(f"{url}/v1/audio/speech", json={"model": "tiny-gain", "input": "Hello.", "response_format": "wav"}, timeout=60)
        assert r.status_code == 200 and r.content[:4] == b"RIFF" and len(r.content) > 44
    finally:
        proc.terminate()
        proc.wait(timeout=60)
