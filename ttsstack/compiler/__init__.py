"""Build-time compile: driver, manifest, validation of artifacts against their programs."""

from .driver import CompileError, CompileReport, compile_addon
from .manifest import Manifest, ManifestError, read_manifest

__all__ = ["CompileError", "CompileReport", "Manifest", "ManifestError", "compile_addon", "read_manifest"]
