"""``ttsstack compile``: turn every network of an addon into artifacts for each backend.

The output folder is the compiled addon: ``addon.yaml`` (with any bucket
override applied), the ``.pt2`` programs, ``artifacts/<backend>/...`` and
``manifest.yaml``. Each job (network, backend, bucket) is keyed by the content
hash of its program, its network spec, the backend and its toolchain versions:
an unchanged job whose artifact is intact is not compiled again. Every
artifact is validated against its program right after it is written. A job
that fails is reported with its network and backend, and the others are still
written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from ..addon import ADDON_FILE, Addon, AddonSpec, load_addon, parse_spec
from ..backends.base import Backend, BackendError, ModuleRunner, NetworkArtifacts, Artifact
from ..runtime.builder import plan_stack
from ..runtime.registry import BACKENDS
from ..tolerances import for_backend
from .manifest import ArtifactEntry, Manifest, ManifestError, cache_key, read_manifest, sha256_file
from .validate import validate_runner

ALL = "all"


@dataclass
class CompileReport:
    """What a compile did: artifacts written, reused from a previous compile, and failures."""

    compiled: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class CompileError(RuntimeError):
    """Some jobs failed; the others' artifacts and the manifest were still written."""

    def __init__(self, report: CompileReport):
        self.report = report
        lines = "\n".join(f"  {job}: {why}" for job, why in report.failed.items())
        super().__init__(f"{len(report.failed)} compile job(s) failed:\n{lines}")


def resolve_backends(names: list[str]) -> list[Backend]:
    """Backend objects for ``names``; ``all`` means every backend available on this host."""
    if ALL in names:
        return [BACKENDS.get(n)() for n in BACKENDS.names() if n != "eager" and BACKENDS.get(n).unavailable_reason() is None]
    backends = []
    for name in names:
        cls = BACKENDS.get(name)
        reason = cls.unavailable_reason()
        if reason:
            raise BackendError(f"backend '{name}' is not available on this host: {reason}")
        backends.append(cls())
    return backends


def with_buckets(spec: AddonSpec, buckets: dict[str, list[int]] | None) -> AddonSpec:
    """The spec with ``dims.<name>.buckets`` replaced (``--buckets`` on the command line)."""
    if not buckets:
        return spec
    data = spec.to_dict()
    for dim, sizes in buckets.items():
        if dim not in data["dims"]:
            raise ValueError(f"--buckets: unknown dim '{dim}'; known: {', '.join(sorted(data['dims']))}")
        data["dims"][dim]["buckets"] = sorted(sizes)
    return parse_spec(data, "--buckets")


def _copy_sources(addon: Addon, spec: AddonSpec, out: Path) -> dict[str, str]:
    """Copy the programs and write ``addon.yaml`` into ``out``; return program hashes."""
    out.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name in spec.networks:
        src = addon.network_file(name)
        dst = Addon(out, spec).resolve(spec.networks[name].file, f"networks.{name}.file")
        if src != dst:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        hashes[name] = sha256_file(dst)
    (out / ADDON_FILE).write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return hashes


def _previous(out: Path) -> list[ArtifactEntry]:
    try:
        return read_manifest(out).artifacts
    except ManifestError:
        return []


def _still_valid(entry: ArtifactEntry, spec: AddonSpec, programs: dict[str, str]) -> bool:
    """Whether an artifact of a backend not compiled now still matches the current programs and spec."""
    if entry.network not in spec.networks:
        return False
    net_spec = spec.networks[entry.network].model_dump(mode="json")
    return entry.key == cache_key(programs[entry.network], net_spec, entry.backend, entry.toolchain, entry.bucket)


def _artifact_name(network: str, backend: Backend, bucket: dict[str, int] | None) -> str:
    tag = "" if bucket is None else "." + ".".join(f"{d}{n}" for d, n in sorted(bucket.items()))
    return f"artifacts/{backend.name}/{network}{tag}{backend.suffix}"


def _shapes(spec, bucket) -> dict[str, list[int | str]]:
    return {
        name: [bucket.get(d, d) if bucket and isinstance(d, str) else d for d in t.shape]
        for name, t in {**spec.inputs, **spec.outputs}.items()
    }


def _jobs(spec: AddonSpec, targets: list[Backend], report: CompileReport) -> list[tuple[str, Backend, dict | None]]:
    """Every (network, backend, bucket) to compile; a network a backend refuses is a failed job."""
    jobs = []
    for backend in targets:
        for net in spec.networks:
            try:
                buckets = backend.buckets(spec.networks[net], spec.dims)
            except BackendError as exc:
                report.failed[f"{net} [{backend.name}]"] = str(exc)
                continue
            jobs.extend((net, backend, bucket) for bucket in buckets)
    return jobs


def compile_addon(
    source: str | Path,
    out: str | Path,
    backends: list[str],
    buckets: dict[str, list[int]] | None = None,
    progress: bool = True,
) -> CompileReport:
    """Compile the addon at ``source`` into ``out`` for ``backends``; see the module docstring.

    Raises :class:`CompileError` after writing everything that succeeded when
    any job fails.
    """
    source, out = Path(source), Path(out)
    addon = load_addon(source)
    spec = with_buckets(addon.spec, buckets)
    plan_stack(spec)  # wiring mistakes fail before any compile work
    targets = resolve_backends(backends)
    previous = _previous(out)
    programs = _copy_sources(addon, spec, out)
    compiled = Addon(out, spec)
    report = CompileReport()
    jobs = _jobs(spec, targets, report)
    names = {b.name for b in targets}
    entries = [a for a in previous if a.backend not in names and _still_valid(a, spec, programs)]
    previous_by_key = {a.key: a for a in previous}
    loaded_programs: dict = {}
    bar = tqdm(jobs, desc="compile", unit="artifact", disable=not progress, delay=0.5)  # no bar when all are cached
    for net, backend, bucket in bar:
        job = f"{net} [{backend.name}{'' if bucket is None else ' ' + str(bucket)}]"
        net_spec = spec.networks[net]
        toolchain = backend.toolchain()
        key = cache_key(programs[net], net_spec.model_dump(mode="json"), backend.name, toolchain, bucket)
        rel = _artifact_name(net, backend, bucket)
        path = out / rel
        old = previous_by_key.get(key)
        if old and old.file == rel and path.is_file() and sha256_file(path) == old.sha256:
            entries.append(old)
            report.reused.append(job)
            continue
        bar.set_postfix_str(job)
        try:
            if net not in loaded_programs:
                loaded_programs[net] = compiled.load_program(net)
            program = loaded_programs[net]
            path.parent.mkdir(parents=True, exist_ok=True)
            backend.compile(program, net_spec, spec.dims, bucket, path)
            runner = backend.load(NetworkArtifacts(net, net_spec, compiled.network_file(net), [Artifact(path, bucket)]))
            reference = ModuleRunner(net_spec, program.module())
            validate_runner(net, backend.name, reference, runner, spec.dims, bucket, for_backend(backend.name, backend.device))
        except Exception as exc:  # noqa: BLE001 - one failed job must not stop the others
            report.failed[job] = f"{type(exc).__name__}: {exc}"
            path.unlink(missing_ok=True)
            continue
        entries.append(
            ArtifactEntry(
                network=net,
                backend=backend.name,
                file=rel,
                sha256=sha256_file(path),
                bucket=bucket,
                shapes=_shapes(net_spec, bucket),
                toolchain=toolchain,
                key=key,
            )
        )
        report.compiled.append(job)
    Manifest(addon=spec.name, programs=programs, artifacts=entries).write(out)
    if report.failed:
        raise CompileError(report)
    return report
