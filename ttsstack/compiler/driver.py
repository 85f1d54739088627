"""``ttsstack compile``: turn every network of an addon into artifacts for each backend.

The output folder is the compiled addon: ``addon.yaml`` (with any bucket
override applied), the ``.pt2`` programs, ``artifacts/<backend>/...`` and
``manifest.yaml``. Each job (network, backend, bucket) is keyed by the content
hash of its program, its network spec, the backend and its toolchain versions:
an unchanged job whose artifact is intact is not compiled again. Every
program's outputs are checked against the shapes ``addon.yaml`` declares and
each bounded network's declared ``context`` is probed on it; every artifact is
validated against its program (static ones also with real padding) before it
is renamed into place, trying the backend's next route when one fails. A job that fails (an ``OSError`` such as a full disk included) is
reported with its network and backend, and the others are still written.
Files are written whole or not at all and one compile holds the output
folder at a time (:mod:`ttsstack.compiler.files`), so concurrent compiles for
different backends all end up in the manifest.

``precision`` (``--precision``: fp32, fp16, bf16, int8) is a backend setting:
a backend that does not offer it is refused before any work, it is part of
each artifact's ``settings`` (so of its cache key), and its artifacts are
validated against the fp32 program with that precision's tolerance. A folder
holds one precision per backend: compiling another replaces that backend's artifacts.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from ..addon import ADDON_FILE, BATCH, Addon, AddonSpec, load_addon, parse_spec
from ..backends.base import FP32, Artifact, Backend, BackendError, ModuleRunner, NetworkArtifacts, bucket_shapes
from ..runtime.builder import plan_stack
from ..runtime.registry import BACKENDS
from ..tolerances import for_backend
from .files import folder_lock, staged, write_atomically
from .manifest import MANIFEST_FILE, ArtifactEntry, Manifest, ManifestError, cache_key, read_manifest, sha256_file
from .stateful import (
    DERIVATION, NotStreamable, candidates, derivations, frame_input, plan_for, stateful_program, stateful_spec,
    twin_name, without_twins,
)
from .validate import check_batch_rows, check_context, check_declared_outputs, validate_runner

ALL = "all"


@dataclass
class CompileReport:
    """What a compile did: artifacts written, reused from a previous compile, and failures."""

    compiled: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    streaming: dict[str, str] = field(default_factory=dict)
    """Per vocoder network: how it streams (its stateful twin, or windows and why)."""


class CompileError(RuntimeError):
    """Some jobs failed; the others' artifacts and the manifest were still written."""

    def __init__(self, report: CompileReport):
        self.report = report
        lines = "\n".join(f"  {job}: {why}" for job, why in report.failed.items())
        super().__init__(f"{len(report.failed)} compile job(s) failed:\n{lines}")


def resolve_backends(names: list[str], precision: str = FP32) -> list[Backend]:
    """Backend objects for ``names`` at ``precision``; ``all`` means every backend available on this host that offers it.

    A named backend that is unavailable, or cannot compile at ``precision``,
    is a :class:`BackendError` naming it.
    """
    if ALL in names:
        return [
            BACKENDS.get(n)(**({} if precision == FP32 else {"precision": precision})) for n in BACKENDS.names()
            if n != "eager" and BACKENDS.get(n).unavailable_reason() is None and precision in BACKENDS.get(n).precisions
        ]
    backends = []
    for name in names:
        cls = BACKENDS.get(name)
        reason = cls.unavailable_reason()
        if reason:
            raise BackendError(f"backend '{name}' is not available on this host: {reason}")
        backends.append(cls(precision=precision) if precision != FP32 else cls())  # a plugin's may take no arguments
    return backends


def with_buckets(spec: AddonSpec, buckets: dict[str, list[int]] | None) -> AddonSpec:
    """The spec with ``dims.<name>.buckets`` replaced (``--buckets`` on the command line).

    ``batch`` replaces the batch buckets (``batch.buckets``) that static
    backends compile ``batch: true`` networks at; they must start with 1 and
    stay within ``batch.max``.
    """
    if not buckets:
        return spec
    data = spec.to_dict()
    batches = any(net.batch for net in spec.networks.values())
    for dim, sizes in buckets.items():
        if dim == BATCH and dim not in data["dims"]:
            if not batches:
                raise ValueError(f"--buckets {BATCH}: addon '{spec.name}' has no `batch: true` network, so no batch axis to bucket")
            data[BATCH] = {"max": spec.batch_dim.max, "buckets": sorted(sizes)}
            continue
        if dim not in data["dims"]:
            known = sorted(data["dims"]) + ([BATCH] if batches else [])
            raise ValueError(f"--buckets: unknown dim '{dim}'; known: {', '.join(known)}")
        data["dims"][dim]["buckets"] = sorted(sizes)
    return parse_spec(data, "--buckets")


def _copy_sources(addon: Addon, spec: AddonSpec, out: Path) -> tuple[dict[str, str], str]:
    """Copy the programs and write ``addon.yaml`` into ``out``; return the program hashes and the config's."""
    hashes = {}
    for name in spec.networks:
        src = addon.network_file(name)
        dst = Addon(out, spec).resolve(spec.networks[name].file, f"networks.{name}.file")
        hashes[name] = sha256_file(src)
        if src != dst and not (dst.is_file() and sha256_file(dst) == hashes[name]):
            dst.parent.mkdir(parents=True, exist_ok=True)
            with staged(dst) as tmp:
                shutil.copyfile(src, tmp)
                hashes[name] = sha256_file(tmp)  # what was copied, should the source change meanwhile
    config = yaml.safe_dump(spec.to_dict(), sort_keys=False).encode()
    config_path = out / ADDON_FILE
    if not (config_path.is_file() and config_path.read_bytes() == config):
        write_atomically(config_path, config)
    return hashes, hashlib.sha256(config).hexdigest()


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
    versions = {**entry.toolchain, **entry.settings}
    return entry.key == cache_key(programs[entry.network], net_spec, entry.backend, versions, entry.bucket)


def _artifact_name(network: str, backend: Backend, bucket: dict[str, int] | None, route: str | None) -> str:
    tag = "" if bucket is None else "." + ".".join(f"{d}{n}" for d, n in sorted(bucket.items()))
    return f"artifacts/{backend.name}/{network}{tag}{backend.suffix_for(route)}"


def _route_failure(route: str, exc: Exception) -> str:
    """One line: the route, the error type and the last line of its message (TorchScript puts the cause after a traceback)."""
    kind = type(exc).__name__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1].removeprefix(f"{kind}: ") if lines else ""
    return f"route {route}: {kind}: {last[:300]}"


def _compile_job(
    net: str, net_spec, program, backend: Backend, dims, bucket, program_file: Path, out: Path
) -> tuple[str, dict[str, str], str]:
    """Compile one job by the backend's first route whose artifact validates; its file, details and sha256.

    Each route's artifact is written to a temporary name, loaded and compared
    with the program, and renamed into place only once it validates; a route
    that fails (to compile, load or validate) is recorded and the next one
    tried. When none works, the error names every route and why it failed.
    """
    reference = ModuleRunner(net_spec, program.module())
    failures = []
    for route in backend.routes(net_spec):
        tolerance = for_backend(backend.name, backend.device, backend.precision, [route] if route else [])
        rel = _artifact_name(net, backend, bucket, route)
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with staged(path) as tmp:
                details = backend.compile(program, net_spec, dims, bucket, tmp, route) or {}
                runner = backend.load(NetworkArtifacts(net, net_spec, program_file, [Artifact(tmp, bucket, details)]))
                validate_runner(net, backend.name, reference, runner, dims, bucket, tolerance)
                sha = sha256_file(tmp)
        except OSError:
            raise  # a full disk is no reason to try another route
        except Exception as exc:  # noqa: BLE001 - the next route may still work
            if route is None:
                raise
            failures.append(_route_failure(route, exc))
            continue
        if failures:
            details = {**details, "rejected": "; ".join(failures)}
        return rel, details, sha
    raise BackendError(f"no route of backend '{backend.name}' compiles network '{net}':\n  " + "\n  ".join(failures))


def _with_twins(
    compiled: Addon, loaded: "_Programs", programs: dict[str, str], previous: dict[str, str],
    previous_twins: dict[str, int], report: CompileReport,
) -> tuple[AddonSpec, dict[str, str]]:
    """The spec with a stateful twin added for each vocoder network that has one (:mod:`.stateful`).

    A twin whose source program is unchanged since the previous compile of
    ``out`` (``previous``: that manifest's program hashes), whose file is
    intact and which the same derivation wrote (``previous_twins``) is planned
    again, not exported again; a new one joins ``loaded``.
    Why a vocoder has no twin goes to ``report.streaming``; it then streams
    on windows. Deriving a twin never fails the compile, but for a write
    that fails (a full disk): the :class:`CompileError` names it.
    """
    spec, out = compiled.spec, compiled.folder
    data = spec.to_dict()
    for name in candidates(spec):
        twin = twin_name(name)
        file = f"networks/{twin}.pt2"
        path = compiled.resolve(file, f"networks.{twin}.file")
        try:
            program = loaded.get(name)
        except Exception:  # noqa: BLE001 - the network's own jobs report why it does not load
            continue
        try:
            frames = frame_input(spec, name)
            unchanged = previous.get(name) == programs[name] and previous_twins.get(twin) == DERIVATION
            if unchanged and path.is_file() and sha256_file(path) == previous.get(twin):
                plan = plan_for(spec.networks[name], program.module(), frames)
                twin_spec = stateful_spec(name, spec.networks[name], plan, file)
            else:
                exported, twin_spec = stateful_program(spec, name, program, frames, file)
                path.parent.mkdir(parents=True, exist_ok=True)
                with staged(path) as tmp:
                    torch.export.save(exported, str(tmp))
                loaded.add(twin, exported)
        except OSError as exc:
            report.failed[f"write {path}"] = f"{type(exc).__name__}: {exc}"
            raise CompileError(report) from None
        except Exception as exc:  # noqa: BLE001 - windows stream it exactly; say why there is no twin
            reason = str(exc) if isinstance(exc, NotStreamable) else f"the twin failed to export: {type(exc).__name__}: {exc}"
            report.streaming[name] = f"overlapping windows ({reason.splitlines()[0] if reason else ''})"
            continue
        programs[twin] = sha256_file(path)
        data["networks"][twin] = twin_spec.model_dump(mode="json", exclude_none=True)
        report.streaming[name] = f"stateful twin '{twin}' ({len(twin_spec.states)} states, {twin_spec.stateful.delay} samples late)"
    return parse_spec(data, f"{out / ADDON_FILE}"), programs


def _jobs(spec: AddonSpec, targets: list[Backend], report: CompileReport) -> list[tuple[str, Backend, dict | None]]:
    """Every (network, backend, bucket) to compile; a network a backend refuses is a failed job.

    A stateful twin is compiled for dynamic backends only: a static one
    would pad its chunks, and its kept states with them; it streams on windows.
    """
    jobs = []
    for backend in targets:
        for net in spec.networks:
            if spec.networks[net].stateful and backend.static:
                continue
            try:
                buckets = backend.buckets(spec.networks[net], spec.dims, spec.batch_dim.buckets or [1])
            except BackendError as exc:
                report.failed[f"{net} [{backend.name}]"] = str(exc)
                continue
            jobs.extend((net, backend, bucket) for bucket in buckets)
    return jobs


class _Programs:
    """Each network's program loaded once per compile and checked against its declared outputs (or why not).

    ``compiled`` is the addon being compiled; a program derived during the
    compile (a stateful twin) joins by :meth:`add`, unchecked.
    """

    def __init__(self, compiled: Addon):
        self.compiled = compiled
        self._loaded: dict[str, object] = {}

    def add(self, net: str, program) -> None:
        """Hold a program derived in this compile, so that its jobs need not read it back."""
        self._loaded[net] = program

    def get(self, net: str):
        """The checked program; raises the same error for every job of a network that fails the check."""
        if net not in self._loaded:
            try:
                program = self.compiled.load_program(net)
                reference = ModuleRunner(self.compiled.spec.networks[net], program.module())
                check_declared_outputs(net, reference, self.compiled.spec.dims)
                if reference.spec.batch:
                    check_batch_rows(net, reference, self.compiled.spec.dims)
                check_context(net, self.compiled.spec.networks[net], program.module(), self.compiled.spec.dims)
                self._loaded[net] = program
            except Exception as exc:  # noqa: BLE001 - reported by every job of the network
                self._loaded[net] = exc
        result = self._loaded[net]
        if isinstance(result, Exception):
            raise result
        return result


def compile_addon(
    source: str | Path,
    out: str | Path,
    backends: list[str],
    buckets: dict[str, list[int]] | None = None,
    progress: bool = True,
    precision: str = FP32,
) -> CompileReport:
    """Compile the addon at ``source`` into ``out`` for ``backends`` at ``precision``; see the module docstring.

    Raises :class:`CompileError` after writing everything that succeeded when
    any job fails, and :class:`BackendError` before any work when a backend
    cannot compile at ``precision``. Waits while another compile holds ``out``.
    """
    source, out = Path(source), Path(out)
    addon = load_addon(source)
    spec = with_buckets(without_twins(addon.spec), buckets)
    plan_stack(spec)  # wiring mistakes fail before any compile work
    targets = resolve_backends(backends, precision)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, progress):
        return _compile_locked(addon, spec, targets, out, progress)


def _compile_locked(addon: Addon, spec: AddonSpec, targets: list[Backend], out: Path, progress: bool) -> CompileReport:
    report = CompileReport()
    previous = _previous(out)
    try:
        previous_programs = read_manifest(out).programs
    except ManifestError:
        previous_programs = {}
    previous_twins = derivations(out)
    try:
        programs, config_sha = _copy_sources(addon, spec, out)
    except OSError as exc:
        report.failed[f"copy the addon into {out}"] = f"{type(exc).__name__}: {exc}"
        raise CompileError(report) from None
    compiled = Addon(out, spec)
    loaded = _Programs(compiled)
    spec, programs = _with_twins(compiled, loaded, programs, previous_programs, previous_twins, report)
    if spec.networks.keys() != compiled.spec.networks.keys():
        config = yaml.safe_dump(spec.to_dict(), sort_keys=False).encode()
        if (out / ADDON_FILE).read_bytes() != config:
            write_atomically(out / ADDON_FILE, config)
        config_sha = hashlib.sha256(config).hexdigest()
        compiled = loaded.compiled = Addon(out, spec)
    jobs = _jobs(spec, targets, report)
    names = {b.name for b in targets}
    entries = [a for a in previous if a.backend not in names and _still_valid(a, spec, programs)]
    previous_by_key = {a.key: a for a in previous}
    bar = tqdm(jobs, desc="compile", unit="artifact", disable=not progress, delay=0.5)  # no bar when all are cached
    for net, backend, bucket in bar:
        job = f"{net} [{backend.name}{'' if bucket is None else ' ' + str(bucket)}]"
        net_spec = spec.networks[net]
        toolchain = backend.toolchain()
        settings = backend.settings()
        key = cache_key(programs[net], net_spec.model_dump(mode="json"), backend.name, {**toolchain, **settings}, bucket)
        old = previous_by_key.get(key)
        if old and (out / old.file).is_file() and sha256_file(out / old.file) == old.sha256:
            entries.append(old)
            report.reused.append(job)
            continue
        bar.set_postfix_str(job)
        try:
            program = loaded.get(net)
            rel, details, sha = _compile_job(net, net_spec, program, backend, spec.dims, bucket, compiled.network_file(net), out)
        except Exception as exc:  # noqa: BLE001 - one failed job (a full disk included) must not stop the others
            report.failed[job] = f"{type(exc).__name__}: {exc}"
            continue
        entries.append(
            ArtifactEntry(
                network=net,
                backend=backend.name,
                file=rel,
                sha256=sha,
                bucket=bucket,
                shapes=bucket_shapes(net_spec, bucket),
                toolchain=toolchain,
                key=key,
                details=details,
                settings=settings,
            )
        )
        report.compiled.append(job)
    try:
        Manifest(addon=spec.name, config_sha256=config_sha, programs=programs, artifacts=entries).write(out)
    except OSError as exc:
        report.failed[f"write {out / MANIFEST_FILE}"] = f"{type(exc).__name__}: {exc}"
    if report.failed:
        raise CompileError(report)
    return report
