"""Packaging: a non-editable install runs the README's first command's default; one version; the license ships.

The install goes into a fresh venv from a wheel built offline (``--no-deps
--no-build-isolation``); the venv then sees this interpreter's site-packages
through a ``.pth`` line, so torch is not installed twice and nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest

import ttsstack
from ttsstack.environment import onnxruntime_conflict, warn_about_environment

REPO = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "tests", "benchmarks", "docs", "build", "dist", "*.egg-info",
                              "__pycache__", "training", "out", "compiled")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stdout}\n{result.stderr}"
    return result


def test_a_non_editable_install_runs_the_first_commands_default(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=SKIP)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(tmp_path / "wheels"), str(source)])
    (wheel,) = (tmp_path / "wheels").glob("ttsstack-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)])
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    (Path(site) / "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co, not ttsstack

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TTSSTACK_CACHE": str(tmp_path / "cache")}
    work = tmp_path / "work"
    work.mkdir()
    where = _run([str(python), "-c", "import ttsstack; print(ttsstack.__file__, ttsstack.__version__)"], cwd=work, env=env)
    assert where.stdout.startswith(site) and where.stdout.split()[1] == ttsstack.__version__
    ran = _run([str(venv / "bin" / "ttsstack"), "synthesize", "--backend", "eager", "--text", "Hello.", "-o", "hello.wav"],
               cwd=work, env=env)
    assert (work / "hello.wav").stat().st_size > 44 and "wrote hello.wav" in ran.stdout
    page = "from ttsstack.serve.page import STATIC, _read; print(sum(len(_read(n)) for n in ['index.html', *dict(STATIC.values())]))"
    assert int(_run([str(python), "-c", page], cwd=work, env=env).stdout) > 1000  # the page ships in the wheel


def test_the_version_has_one_source():
    from importlib.metadata import version

    assert "version = " not in (REPO / "pyproject.toml").read_text().split("[tool.setuptools.dynamic]")[0]
    assert version("ttsstack") == ttsstack.__version__  # the installed metadata read it from ttsstack/__init__.py


def test_the_declared_license_ships():
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    assert 'license = {text = "Apache-2.0"}' in (REPO / "pyproject.toml").read_text()


@pytest.mark.parametrize("installed, warns", [(("onnxruntime",), False), (("onnxruntime", "onnxruntime-gpu"), True)])
def test_both_onnxruntime_wheels_are_a_warning(tmp_path, monkeypatch, installed, warns):
    """Distributions seen by ``importlib.metadata`` first on ``sys.path``: fakes of the two wheels."""
    for name in installed:
        dist = tmp_path / f"{name.replace('-', '_')}-9.9.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 9.9\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert (onnxruntime_conflict() is not None) == (warns or "onnxruntime-gpu" in _installed_for_real())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_about_environment()
    if warns:
        assert any("onnxruntime 9.9 and onnxruntime-gpu 9.9" in str(w.message) for w in caught)


def _installed_for_real() -> set[str]:
    from importlib.metadata import distributions

    return {d.metadata["Name"] for d in distributions()}
