"""Benchmarks are not tests: this only checks that the benchmarks run and report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_latency_quick_runs_on_the_tiny_addon(tiny_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "latency.py"), "--quick", "--backends", "cpu",
         "--addons", str(tiny_compiled), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "latency.json").read_text())
    systems = {row["system"] for row in report["rows"]}
    assert systems == {"naive-eager", "ttsstack-cpu"}
    assert all(row["first_audio_s"] <= row["total_s"] for row in report["rows"])
    assert "first audio" in result.stdout and report["targets"]


def test_static_overhead_quick_runs_on_the_tiny_addon(tiny_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "static_overhead.py"), "--quick",
         "--addon", str(tiny_compiled), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "static_overhead.json").read_text())
    assert {row["system"] for row in report["rows"]} == {"onnx", "onnx-static"}
    dims = {"T_text", "T_frames"}
    assert set(report["current"]) == dims == set(report["suggestions"]) == set(report["recommended"])
    for row in report["rows"]:
        if row["system"] == "onnx-static":
            for dim in dims:
                assert 0 <= row[dim]["padding_share"] <= 1
                assert row[dim]["valid_steps"] <= row[dim]["computed_steps"]
    for dim, options in report["suggestions"].items():
        assert options
        for option in options:
            assert option["buckets"] == sorted(option["buckets"]) and len(option["buckets"]) <= option["k"]
            assert option["buckets"][-1] <= report["dim_max"][dim]
            assert 0 <= option["padding_share"] <= 1
        # the current sets are multiples of --align with at most --max-buckets sizes: inside the search space
        assert min(o["computed_steps"] for o in options) <= report["current"][dim]["computed_steps"]
    assert "ttsstack compile" in report["command"] and "--buckets T_text=" in report["command"]


def test_ar_step_overhead_runs_on_a_static_backend(tiny_tacotron_compiled, tmp_path):
    out = tmp_path / "ar.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ar_step_overhead.py"), "--addon", str(tiny_tacotron_compiled),
         "--backend", "onnx-static", "--backend", "cpu", "--steps", "20", "--repeats", "1", "--text", "Hi.", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["backend"] for row in rows] == ["onnx-static", "cpu"]
    assert all(row["steps"] == 20 and row["bare_us"] > 0 and row["block_us"] >= row["step_us"] for row in rows)
    assert "runner ovh" in result.stdout


def test_vocoder_quick_runs_on_the_tiny_addon(tiny_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "vocoder.py"), "--quick", "--addon", str(tiny_compiled),
         "--schedule", "32,32", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "vocoder.json").read_text())["rows"]
    assert {r["schedule"] for r in rows} == {"default", "32,32"} and len(rows) == 4
    assert all(r["seconds"] > 0 and r["frames"] > 0 for r in rows)


def test_cpu_routes_times_both_routes_of_a_network(tiny_addon, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cpu_routes.py"), "--addon", str(tiny_addon),
         "--network", "duration_encoder", "--length", "16", "--runs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "cpu_routes.json").read_text())["rows"]
    assert [(r["network"], r["route"]) for r in rows] == [("duration_encoder", "torchscript"), ("duration_encoder", "aotinductor")]
    assert all(r["ms_at_16"] > 0 and r["compile_s"] > 0 for r in rows)


def test_vocoder_times_a_vocoder_network_per_backend(tiny_vocoder_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "vocoder.py"), "--quick", "--addon", str(tiny_vocoder_compiled),
         "--backend", "cpu", "--backend", "onnx-static", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "vocoder.json").read_text())["rows"]
    schedules = {"cpu streamed", "cpu whole", "onnx-static streamed", "onnx-static whole"}
    assert {r["schedule"] for r in rows} == schedules and {r["vocoder"] for r in rows} == {"NetworkVocoder"}
    assert len(rows) == 8 and all(r["seconds"] > 0 and r["frames"] > 0 for r in rows)
