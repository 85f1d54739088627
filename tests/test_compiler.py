"""The compile driver: manifest, cache, per-job failures."""

from __future__ import annotations

import pytest

from ttsstack.backends.cpu import CpuBackend
from ttsstack.cli import main
from ttsstack.compiler import CompileError, compile_addon, read_manifest
from ttsstack.runtime.registry import BACKENDS

from .conftest import TEST_BACKENDS


def test_manifest_records_every_artifact(tiny_compiled):
    manifest = read_manifest(tiny_compiled)
    assert {(a.network, a.backend) for a in manifest.artifacts} >= {
        ("text_encoder", "cpu"), ("duration_encoder", "cpu"), ("decoder", "cpu")}
    entry = next(a for a in manifest.artifacts if a.backend == "cpu" and a.network == "decoder")
    assert entry.shapes["frames"] == [1, "T_frames", 8]
    assert entry.toolchain["torch"] and len(entry.sha256) == 64
    assert set(manifest.programs) == {"text_encoder", "duration_encoder", "decoder"}


def test_recompiling_an_unchanged_addon_does_nothing(tiny_addon, tmp_path):
    out = tmp_path / "out"
    first = compile_addon(tiny_addon, out, ["cpu"], progress=False)
    assert len(first.compiled) == 3
    again = compile_addon(tiny_addon, out, ["cpu"], progress=False)
    assert again.compiled == [] and len(again.reused) == 3


def test_recompiling_for_every_backend_does_nothing(tiny_addon, tiny_compiled_copy):
    jobs = len(read_manifest(tiny_compiled_copy).artifacts)
    assert jobs == 3 + 3 + 6 + 6  # cpu, onnx, and one artifact per bucket on onnx-static and neuron
    again = compile_addon(tiny_addon, tiny_compiled_copy, TEST_BACKENDS, progress=False)
    assert again.compiled == [] and len(again.reused) == jobs


def test_static_artifacts_record_their_exact_shapes(tiny_compiled):
    for backend in ("onnx-static", "neuron"):
        entry = next(a for a in read_manifest(tiny_compiled).for_backend(backend)
                     if a.network == "text_encoder" and a.bucket == {"T_text": 32})
        assert entry.shapes == {"tokens": [1, 32], "text_mask": [1, 32], "encoded": [1, 32, 8]}
        assert entry.file == f"artifacts/{backend}/text_encoder.T_text32{'.onnx' if backend == 'onnx-static' else '.neuron.pt'}"


@pytest.fixture
def unavailable_backend():
    @BACKENDS.register("test-missing")
    class Missing(CpuBackend):
        """A backend whose toolchain this host lacks."""

        name = "test-missing"

        @classmethod
        def unavailable_reason(cls):
            return "test-toolchain is not installed"

    yield
    BACKENDS.unregister("test-missing")


def test_backend_all_compiles_every_available_backend(tiny_addon, tiny_compiled_copy, unavailable_backend, capsys):
    assert main(["compile", str(tiny_addon), "-o", str(tiny_compiled_copy), "--backend", "all", "-q"]) == 0
    captured = capsys.readouterr()
    assert "--backend all: skipping test-missing: test-toolchain is not installed" in captured.err
    assert "up to date" in captured.out  # every available backend was already compiled
    assert read_manifest(tiny_compiled_copy).backends() == sorted(TEST_BACKENDS)


@pytest.fixture
def flaky_backend():
    @BACKENDS.register("test-flaky")
    class Flaky(CpuBackend):
        """Fails on the decoder only, like an exporter that cannot handle one network."""

        name = "test-flaky"

        def compile(self, program, spec, dims, bucket, out, route=None):
            if "mel" in spec.outputs:
                raise RuntimeError("unsupported operator aten::frobnicate")
            return super().compile(program, spec, dims, bucket, out, route)

    yield
    BACKENDS.unregister("test-flaky")


def test_failed_job_names_network_and_backend_and_keeps_the_rest(tiny_addon, tmp_path, flaky_backend):
    out = tmp_path / "out"
    with pytest.raises(CompileError, match=r"decoder \[test-flaky\]: .*\n\s+route torchscript: RuntimeError: unsupported operator") as err:
        compile_addon(tiny_addon, out, ["cpu", "test-flaky"], progress=False)
    assert len(err.value.report.compiled) == 5
    manifest = read_manifest(out)
    assert {(a.network, a.backend) for a in manifest.artifacts if a.backend == "test-flaky"} == {
        ("text_encoder", "test-flaky"), ("duration_encoder", "test-flaky")}
    assert len(manifest.for_backend("cpu")) == 3


@pytest.mark.parametrize("flag, message", [
    ("batch=2,4", "--buckets: batch.buckets: must start with 1 (a lone stream runs at batch 1), got [2, 4]"),
    ("batch=1,16", "--buckets: invalid addon config:\n  batch: buckets: largest bucket 16 exceeds max 8"),
])
def test_bad_batch_buckets_are_refused_before_any_work(tiny_tacotron, tmp_path, capsys, flag, message):
    out = tmp_path / "out"
    assert main(["compile", str(tiny_tacotron), "-o", str(out), "--backend", "neuron", "--buckets", flag]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_batch_buckets_need_a_batch_network(tiny_addon, tmp_path):
    with pytest.raises(ValueError, match=r"--buckets batch: addon 'tiny' has no `batch: true` network"):
        compile_addon(tiny_addon, tmp_path / "out", ["neuron"], buckets={"batch": [1, 2]}, progress=False)
