"""``ttsstack.load``: a compiled (or source) addon to a ready :class:`~ttsstack.runtime.Voice`."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from .addon import ADDON_FILE, load_addon
from .backends.base import Artifact, BackendError, NetworkArtifacts
from .compiler.driver import compile_addon
from .compiler.manifest import MANIFEST_FILE, read_manifest, verify_file
from .runtime.builder import RuntimeOptions
from .runtime.registry import BACKENDS
from .runtime.voice import Voice


def cache_root() -> Path:
    """Where source addons are compiled on demand: ``$TTSSTACK_CACHE`` or ``~/.cache/ttsstack``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ttsstack"
    return Path(os.environ.get("TTSSTACK_CACHE", default))


def ensure_compiled(folder: str | Path, backend: str, progress: bool = True) -> Path:
    """A compiled addon for ``folder``: itself when compiled, else a cached compile of it.

    The cache folder is keyed by the source folder's absolute path; the
    compiler's own job keys make a recompile of an unchanged addon free, and
    an edited one is recompiled (or, for ``eager``, its programs recopied).
    With ``progress``, a cache hit says so in one line instead of a bar.
    """
    folder = Path(folder)
    if (folder / MANIFEST_FILE).is_file():
        return folder
    load_addon(folder)  # a clear error when it is not an addon at all
    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    out = cache_root() / f"{folder.resolve().name}-{tag}"
    report = compile_addon(folder, out, [] if backend == "eager" else [backend], progress=progress)
    if progress and not report.compiled:
        print(f"{folder} [{backend}]: compiled artifacts cached in {out}, nothing to compile", file=sys.stderr)
    return out


def load(
    folder: str | Path,
    backend: str = "cpu",
    options: RuntimeOptions | None = None,
    compile_if_needed: bool = True,
    warmup: bool = True,
) -> Voice:
    """Load an addon on ``backend`` and build its stack, checking everything first.

    ``folder`` is a compiled addon (with ``manifest.yaml``), or, when
    ``compile_if_needed``, a source addon compiled into the cache first. Its
    ``addon.yaml`` and every artifact are checked against their sha256 (which
    proves integrity, not authorship: a compiled folder holds programs, so
    load only folders you compiled or trust) and every artifact against the
    toolchain that made it; no artifact path may leave the folder.
    With ``warmup`` the stack runs once on a dummy input before returning.
    """
    folder = Path(folder)
    if compile_if_needed:
        folder = ensure_compiled(folder, backend)
    manifest = read_manifest(folder)
    verify_file(folder / ADDON_FILE, manifest.config_sha256, f"{folder}/{MANIFEST_FILE}: config_sha256")
    addon = load_addon(folder)
    backend_obj = BACKENDS.get(backend)()
    reason = backend_obj.unavailable_reason()
    if reason:
        raise BackendError(f"backend '{backend}' is not available on this host: {reason}")
    runners = {}
    for name, spec in addon.spec.networks.items():
        program = addon.network_file(name)
        verify_file(program, manifest.programs.get(name, ""), f"{folder}/{MANIFEST_FILE}: programs.{name}")
        entries = [a for a in manifest.for_backend(backend) if a.network == name]
        if not entries and spec.stateful is not None and backend != "eager":
            continue  # a stateful twin is compiled for dynamic backends only; its vocoder streams on windows here
        if not entries and backend != "eager":
            raise BackendError(
                f"{folder}: compiled addon has no '{backend}' artifact for network '{name}' "
                f"(it has: {', '.join(manifest.backends()) or 'none'}); "
                f"run: ttsstack compile SOURCE_ADDON -o {folder} --backend {backend}"
            )
        for entry in entries:
            problem = backend_obj.incompatibility(entry.toolchain) or backend_obj.host_problem(entry.details)
            if problem:
                raise BackendError(
                    f"{folder}: '{backend}' artifact of network '{name}' cannot be loaded: {problem}; "
                    f"recompile with: ttsstack compile SOURCE_ADDON -o {folder} --backend {backend}"
                )
            verify_file(manifest.artifact_path(folder, entry), entry.sha256, f"{folder}/{MANIFEST_FILE}: {name} [{backend}]")
        artifacts = [Artifact(manifest.artifact_path(folder, e), e.bucket, e.details) for e in entries]
        runners[name] = backend_obj.load(NetworkArtifacts(name, spec, program, artifacts))
    voice = Voice(addon.spec, runners, backend_obj.block_variants, options, backend=backend)
    if warmup:
        voice.warmup()
    return voice
