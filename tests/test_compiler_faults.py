"""Faults around a compile: a full disk, two compiles into one folder, a tampered compiled folder, wrong declared shapes."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

import ttsstack
from ttsstack.backends.cpu import CpuBackend
from ttsstack.compiler import CompileError, ManifestError, compile_addon, read_manifest
from ttsstack.compiler.manifest import sha256_file
from ttsstack.runtime.registry import BACKENDS


@pytest.fixture
def python_writer_backend(tmp_path):
    """A cpu backend that writes its artifact from Python (what a full disk turns into an ``OSError``).

    ``fail_with`` set to an errno makes the write fail that way without a full disk.
    """

    @BACKENDS.register("test-pywrite")
    class PythonWriter(CpuBackend):
        """TorchScript compiled to scratch space, then written to the output folder by Python."""

        name = "test-pywrite"
        fail_with: int | None = None

        def compile(self, program, spec, dims, bucket, out, route=None):
            scratch = tmp_path / "scratch" / out.name
            scratch.parent.mkdir(exist_ok=True)
            details = super().compile(program, spec, dims, bucket, scratch, route)
            if PythonWriter.fail_with is not None:
                raise OSError(PythonWriter.fail_with, "injected", str(out))
            out.write_bytes(scratch.read_bytes())
            return details

    yield PythonWriter
    BACKENDS.unregister("test-pywrite")


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (where this host lets the tests mount one), else None."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    ).returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def _fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` until ``leave`` bytes (rounded up to whole blocks) are free."""
    block = os.statvfs(disk).f_bsize
    keep = -(-leave // block)
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while os.statvfs(disk).f_bavail > keep:
                f.write(b"\0" * block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC and keep == 0


def _blocks(paths: list[Path], block: int) -> int:
    return sum(-(-p.stat().st_size // block) for p in paths) * block


def test_full_disk_fails_jobs_and_keeps_the_previous_compile(tiny_addon, small_disk, python_writer_backend, tmp_path):
    out = (small_disk or tmp_path) / "compiled"
    compile_addon(tiny_addon, out, ["cpu"], progress=False)
    before = (out / "manifest.yaml").read_bytes()
    if small_disk is not None:
        _fill(small_disk)
    else:
        python_writer_backend.fail_with = errno.ENOSPC
    with pytest.raises(CompileError) as err:
        compile_addon(tiny_addon, out, ["test-pywrite"], progress=False)
    failed = err.value.report.failed
    for net in ("text_encoder", "duration_encoder", "decoder"):
        assert "No space left on device" in failed[f"{net} [test-pywrite]"] or "injected" in failed[f"{net} [test-pywrite]"]
    if small_disk is not None:
        assert (out / "manifest.yaml").read_bytes() == before  # the new manifest could not be written whole
    assert read_manifest(out).backends() == ["cpu"]
    assert not [p for p in out.rglob("*") if ".staging" in p.parts]  # no half-written file left behind
    ttsstack.load(out, backend="cpu", compile_if_needed=False, warmup=False)


@pytest.mark.parametrize("backend", ["test-pywrite", "cpu"])  # cpu: torch.jit.save to a full disk aborted the process
def test_full_disk_on_a_first_compile_names_every_failure(tiny_addon, small_disk, python_writer_backend, backend):
    """Room for the addon's own files only: every job and the manifest fail, reported together, nothing half-written."""
    if small_disk is None:
        pytest.skip("mounting a tmpfs is not allowed here; the injected-ENOSPC variant runs in the test above")
    sources = [*(tiny_addon / "networks").iterdir(), tiny_addon / "addon.yaml"]
    _fill(small_disk, leave=_blocks(sources, os.statvfs(small_disk).f_bsize))
    out = small_disk / "compiled"
    with pytest.raises(CompileError) as err:
        compile_addon(tiny_addon, out, [backend], progress=False)
    failed = err.value.report.failed
    assert set(failed) == {f"{n} [{backend}]" for n in ("text_encoder", "duration_encoder", "decoder")} | {
        f"write {out / 'manifest.yaml'}"}
    assert all("No space left on device" in why for why in failed.values()), failed
    assert not (out / "manifest.yaml").exists()
    assert not [p for p in out.rglob("*") if ".staging" in p.parts]  # no half-written file left behind


def test_concurrent_compiles_into_one_folder_keep_both(tiny_addon, tmp_path, python_writer_backend):
    out = tmp_path / "compiled"
    errors: list[BaseException] = []

    def run(backend: str) -> None:
        try:
            compile_addon(tiny_addon, out, [backend], progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in ("cpu", "test-pywrite")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_manifest(out).backends() == ["cpu", "test-pywrite"]


def test_edited_compiled_config_is_refused(tiny_compiled_copy):
    config = tiny_compiled_copy / "addon.yaml"
    data = yaml.safe_load(config.read_text())
    data["networks"]["decoder"]["context"] = 0
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ManifestError, match="config_sha256.*addon.yaml' is corrupted or was modified"):
        ttsstack.load(tiny_compiled_copy, backend="cpu", warmup=False)


@pytest.mark.parametrize("absolute", [False, True])
def test_manifest_files_stay_inside_the_folder(tiny_compiled_copy, tmp_path, absolute):
    manifest_path = tiny_compiled_copy / "manifest.yaml"
    data = yaml.safe_load(manifest_path.read_text())
    entry = next(a for a in data["artifacts"] if a["backend"] == "cpu" and a["network"] == "decoder")
    outside = tmp_path / "outside" / "x.ts"
    outside.parent.mkdir()
    shutil.copyfile(tiny_compiled_copy / entry["file"], outside)
    entry["file"] = str(outside) if absolute else "../outside/x.ts"
    assert sha256_file(outside) == entry["sha256"]
    manifest_path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ManifestError, match="decoder \\[cpu\\]: file '.*x.ts' escapes the compiled folder"):
        ttsstack.load(tiny_compiled_copy, backend="cpu", warmup=False)


def test_declared_output_shape_is_checked_at_compile(tiny_copy, tmp_path):
    """A mel declared with 9 bins against the program's 8 fails the decoder's jobs, naming the axis."""
    config = tiny_copy / "addon.yaml"
    data = yaml.safe_load(config.read_text())
    data["networks"]["decoder"]["outputs"]["mel"]["shape"] = [1, "T_frames", 9]
    data["audio"]["n_mels"] = 9  # the config agrees with itself; only the program differs
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CompileError, match=r"networks.decoder.outputs.mel.shape\[2\]: declared 9 = 9, the program returns 8") as err:
        compile_addon(tiny_copy, tmp_path / "out", ["cpu"], progress=False)
    assert set(err.value.report.failed) == {"decoder [cpu]"}


def test_declared_output_dtype_is_checked_at_compile(tiny_copy, tmp_path):
    config = tiny_copy / "addon.yaml"
    data = yaml.safe_load(config.read_text())
    data["networks"]["duration_encoder"]["outputs"]["durations"]["dtype"] = "int64"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CompileError, match="networks.duration_encoder.outputs.durations.dtype: declared int64, the program returns float32"):
        compile_addon(tiny_copy, tmp_path / "out", ["cpu"], progress=False)


def test_unreadable_program_fails_its_jobs(tiny_copy, tmp_path):
    """A program that is not an archive fails its network's jobs, naming the file; the other networks compile."""
    (tiny_copy / "networks" / "decoder.pt2").write_bytes(b"not a zip")
    with pytest.raises(CompileError, match="decoder \\[cpu\\]: AddonError: networks.decoder.file: .*not a readable .pt2 archive") as err:
        compile_addon(tiny_copy, tmp_path / "out", ["cpu"], progress=False)
    assert set(err.value.report.failed) == {"decoder [cpu]"}
