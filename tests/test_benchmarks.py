"""Benchmarks are not tests: this only checks that the benchmarks run and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
"""The benchmarks run as scripts: they import this checkout's ttsstack, whatever is installed."""


def test_latency_quick_runs_on_the_tiny_addon(tiny_compiled, tiny_vocoder_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(  # with Griffin-Lim, and with a vocoder network
        [sys.executable, str(REPO / "benchmarks" / "latency.py"), "--quick", "--backend", "cpu", "--inline",
         "--addon", str(tiny_compiled), "--addon", str(tiny_vocoder_compiled), "--text", "chars_0050,chars_1000",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "latency.json").read_text())
    systems = {row["system"] for row in report["rows"]}
    assert systems == {"naive-eager", "ttsstack-cpu", "ttsstack-cpu-inline"} and len({row["addon"] for row in report["rows"]}) == 2
    assert all(row["first_audio_s"] <= row["total_s"] for row in report["rows"])
    assert {row["chars"] for row in report["rows"]} == {50, 1089}  # the texts asked for
    for row in report["rows"]:  # RTF in its usual sense, the speed multiple beside it
        assert row["rtf"] == pytest.approx(row["total_s"] / row["audio_s"])
        assert row["speed_multiple"] == pytest.approx(1 / row["rtf"])
    assert all(row["first_call_first_audio_s"] for row in report["rows"] if row["chars"] == min(r["chars"] for r in report["rows"]))
    assert "first audio" in result.stdout and report["targets"]
    # every total beside this host's compute limit, and the host described with its peaks
    assert all(row["limit_s"] > 0 and row["x_limit"] == pytest.approx(row["total_s"] / row["limit_s"]) for row in report["rows"])
    assert report["host"]["cpu"] and report["peaks"]["sgemm_gflops"] > 0 and report["peaks"]["gemv_gbps"] > 0


def test_latency_refuses_a_text_it_does_not_have(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "latency.py"), "--text", "chars_0200,chars_9999",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 2 and "--text: no such text chars_9999 (have chars_0050" in result.stderr


def test_static_overhead_quick_runs_on_the_tiny_addon(tiny_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "static_overhead.py"), "--quick",
         "--addon", str(tiny_compiled), "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=ENV,
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
    out = tmp_path / "ar_step_overhead.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ar_step_overhead.py"), "--addon", str(tiny_tacotron_compiled),
         "--backend", "onnx-static", "--backend", "cpu", "--steps", "20", "--runs", "1", "--text", "Hi.", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["backend"] for row in rows] == ["onnx-static", "cpu"]  # the default list is replaced, not extended
    assert all(row["steps"] == 20 and row["bare_us"] > 0 and row["block_us"] >= row["step_us"] for row in rows)
    assert "runner ovh" in result.stdout
    assert all(row["weight_mb"] > 0 and row["x_limit"] == pytest.approx(row["block_us"] / row["limit_us"]) for row in rows)


def test_vocoder_quick_runs_on_the_tiny_addon(tiny_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "vocoder.py"), "--quick", "--addon", str(tiny_compiled),
         "--schedule", "32:32", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "vocoder.json").read_text())["rows"]
    stages = {"acoustic model (cpu, streamed)", "griffin-lim default", "griffin-lim 32:32"}
    assert {r["vocoder"] for r in rows} == stages and len(rows) == 2 * len(stages)  # the two shortest texts
    assert all(r["rtf"] == pytest.approx(1 / r["x_real_time"]) for r in rows)
    assert all(0 < r["share"] < 1 for r in rows if r["vocoder"].startswith("griffin-lim"))
    assert all(r["seconds"] > 0 and r["frames"] > 0 for r in rows)


def test_vocoder_times_a_vocoder_network_per_backend(tiny_vocoder_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "vocoder.py"), "--quick", "--addon", str(tiny_vocoder_compiled),
         "--backend", "cpu", "--backend", "onnx-static", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "vocoder.json").read_text())["rows"]
    networks = {f"network {backend} {how}" for backend in ("cpu", "onnx-static") for how in ("streamed", "whole")}
    stages = {"acoustic model (cpu, streamed)", "griffin-lim default"} | networks
    assert {r["vocoder"] for r in rows} == stages and len(rows) == 2 * len(stages)
    assert all(r["seconds"] > 0 and r["frames"] > 0 and 0 < r["share"] < 1 for r in rows if r["vocoder"] in networks)


def test_benchmarks_write_to_an_untracked_folder_unless_told_to_record(tiny_compiled, tmp_path):
    """Without ``--out``, results go to ``benchmarks/out/`` (gitignored), never over the committed ``results/``."""
    results = REPO / "benchmarks" / "results" / "vocoder.json"
    before = results.read_bytes() if results.exists() else None
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "vocoder.py"), "--quick", "--runs", "1", "--addon", str(tiny_compiled)],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {REPO / 'benchmarks' / 'out' / 'vocoder.json'}" in result.stdout
    assert (results.read_bytes() if results.exists() else None) == before
    ignored = subprocess.run(["git", "check-ignore", "-q", "benchmarks/out/vocoder.json"], cwd=REPO)
    assert ignored.returncode == 0, "benchmarks/out/ must be gitignored"
    both = subprocess.run([sys.executable, str(REPO / "benchmarks" / "vocoder.py"), "--record", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=ENV)
    assert both.returncode == 2 and "either --record or --out" in both.stderr


def _full_size_report(script: str, args: list[str], out: Path) -> dict:
    """Run a full-size benchmark (``precision.py``, ``batching.py``) on the FastPitch-size decoder at 24 frames,
    one timed call; its JSON report."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{script}.py"), "--network", "fastpitch-decoder", "--backend", "cpu",
         "--frames", "24", "--runs", "1", "--out", str(out), *args],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert result.returncode == 0, result.stderr
    return json.loads((out / f"{script}.json").read_text())


def test_precision_times_each_precision_against_the_limit(tmp_path):
    report = _full_size_report("precision", ["--precision", "fp32,int8"], tmp_path)
    rows = {row["precision"]: row for row in report["rows"]}
    assert set(rows) == {"fp32", "int8"} and report["host"]["cpu"]
    assert rows["fp32"]["mel_mae"] < 1e-5 < rows["int8"]["mel_mae"]  # int8 for real, fp32 exact
    assert rows["int8"]["artifact_mb"] < rows["fp32"]["artifact_mb"] / 2
    assert all(row["valid"] == "yes" and row["x_limit"] == pytest.approx(row["fastest_ms"] / row["limit_ms"]) for row in rows.values())


def test_batching_times_each_batch_size_per_row_against_the_limit(tmp_path):
    report = _full_size_report("batching", ["--rows", "1,3"], tmp_path)
    one, three = sorted(report["rows"], key=lambda row: row["rows"])
    assert (one["rows"], three["rows"]) == (1, 3) and report["host"]["cpu"]
    assert three["gflops"] == pytest.approx(3 * one["gflops"])  # three rows of real work, counted
    assert three["ms_per_row"] == pytest.approx(three["fastest_ms"] / 3)
    assert one["vs_one_row"] == 1 and three["x_limit"] == pytest.approx(three["ms_per_row"] / three["limit_ms_per_row"])


def test_ar_first_audio_counts_the_steps_to_the_first_audio(tiny_tacotron_compiled, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ar_first_audio.py"), "--addon", str(tiny_tacotron_compiled),
         "--backend", "cpu", "--runs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "ar_first_audio.json").read_text())["results"]
    assert len(rows) == 2 and {row["backend"] for row in rows} == {"cpu"}
    # 8 frames, plus the tiny postnet's context (2) and Griffin-Lim's lookahead (2), both texts long enough
    assert all(row["steps_to_first_mel"] == row["steps_to_first_audio"] == 12 for row in rows)
    assert all(0 < row["first_mel_ms"] <= row["first_audio_ms"] for row in rows)


def test_serve_load_sweeps_clients_on_a_batching_server(tiny_tacotron_compiled, tmp_path):
    """One server with --batch 2 (every tiny Tacotron network is batch: true), loaded by 1 then 2 clients."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "serve_load.py"), "--addon", f"{tiny_tacotron_compiled}:cpu",
         "--batch", "2", "--sweep", "1,2", "--duration", "1", "--warmup", "0.3", "--text", "Two streams in step.",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "serve_load_sweep_tiny-tacotron.json").read_text())
    (setting,) = report["settings"]
    assert setting["batch"] == 2 and [p["clients"] for p in setting["points"]] == [1, 2]
    assert all(p["requests_ok"] > 0 and p["errors"] == 0 for p in setting["points"])
    first = setting["points"][0]["time_to_first_audio_ms"]["p95"]
    assert report["p95_target_ms"] == pytest.approx(2 * first, abs=0.1)  # --p95-factor 2 of one client alone
    held = [p["clients"] for p in setting["points"] if p["time_to_first_audio_ms"]["p95"] <= report["p95_target_ms"]]
    assert setting["streams_held"] == max(held)
    assert setting["batched_calls"]["decoder_step"].get("2", 0) > 0  # two clients' decoder steps ran as one call
    assert "streams held under the target" in result.stdout
