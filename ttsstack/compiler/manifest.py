"""``manifest.yaml``: what a compiled addon holds, with hashes and the toolchain that made it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..yamlfile import YamlError, load_yaml
from .files import write_atomically

MANIFEST_FILE = "manifest.yaml"
MANIFEST_FORMAT = 2  # 2: config_sha256 (the compiled addon.yaml is hashed too)


class ManifestError(ValueError):
    """A missing, unreadable or inconsistent manifest, or an artifact that fails its hash."""


class ArtifactEntry(BaseModel):
    """One compiled artifact of one network for one backend (and one bucket on static backends)."""

    model_config = ConfigDict(extra="forbid")
    network: str
    backend: str
    file: str
    sha256: str
    bucket: dict[str, int] | None = None
    shapes: dict[str, list[int | str]]
    toolchain: dict[str, str]
    key: str
    details: dict[str, str] = Field(default_factory=dict)  # the backend's record: route, what a host needs
    settings: dict[str, str] = Field(default_factory=dict)  # compile settings (compiler flags); in the key


class Manifest(BaseModel):
    """The whole manifest: source program hashes and every artifact."""

    model_config = ConfigDict(extra="forbid")
    format: int = MANIFEST_FORMAT
    addon: str
    config_sha256: str  # sha256 of the compiled folder's addon.yaml
    programs: dict[str, str] = Field(default_factory=dict)  # network -> sha256 of its .pt2
    artifacts: list[ArtifactEntry] = Field(default_factory=list)

    def for_backend(self, backend: str) -> list[ArtifactEntry]:
        """The artifacts of one backend."""
        return [a for a in self.artifacts if a.backend == backend]

    def precision(self, backend: str) -> str:
        """The precision ``backend``'s artifacts were compiled at (fp32 for artifacts that do not say)."""
        found = {a.settings.get("precision", "fp32") for a in self.for_backend(backend)}
        return ", ".join(sorted(found)) or "fp32"

    def routes(self, backend: str) -> list[str]:
        """The routes ``backend``'s artifacts were compiled by (the ``cpu`` backend's ``torchscript``, ``aotinductor``)."""
        return sorted({a.details["route"] for a in self.for_backend(backend) if "route" in a.details})

    def backends(self) -> list[str]:
        """Backends with at least one artifact."""
        return sorted({a.backend for a in self.artifacts})

    def write(self, folder: Path) -> None:
        """Write ``manifest.yaml`` into ``folder``, whole or not at all."""
        write_atomically(folder / MANIFEST_FILE, yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False).encode())

    def artifact_path(self, folder: Path, entry: ArtifactEntry) -> Path:
        """Where ``entry``'s file is; refuses a path leaving ``folder`` (``..``, absolute, or through a link)."""
        root = folder.resolve()
        path = (root / entry.file).resolve()
        if not path.is_relative_to(root):
            raise ManifestError(
                f"{folder / MANIFEST_FILE}: {entry.network} [{entry.backend}]: file '{entry.file}' escapes the compiled folder"
            )
        return path


def read_manifest(folder: Path) -> Manifest:
    """Read and validate ``folder/manifest.yaml``."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{folder}: not a compiled addon (no {MANIFEST_FILE}); run: ttsstack compile {folder} -o OUT")
    try:
        manifest = Manifest.model_validate(load_yaml(path.read_text(), str(path)))
    except (YamlError, ValidationError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest: {exc}") from None
    if manifest.format != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: manifest format {manifest.format}, this ttsstack reads {MANIFEST_FORMAT}; recompile the addon")
    return manifest


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected: str, what: str) -> None:
    """Fail unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        raise ManifestError(f"{what}: file '{path}' is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise ManifestError(
            f"{what}: '{path}' is corrupted or was modified (sha256 {actual[:12]}..., manifest says {expected[:12]}...); recompile"
        )


def cache_key(program_sha: str, spec_json: dict, backend: str, toolchain: dict[str, str], bucket: dict[str, int] | None) -> str:
    """Content key of one compile job: same key, same artifact."""
    blob = json.dumps([program_sha, spec_json, backend, toolchain, bucket], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
