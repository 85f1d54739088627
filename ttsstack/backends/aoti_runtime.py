"""An AOTInductor package run through its C interface, so that other Python threads run meanwhile.

``torch._inductor.aoti_load_package`` calls the model with the GIL held
(pytorch/pytorch#197516, open in torch 2.13): while an AOTInductor network
runs, no other Python thread of the process moves, so a voice's mel thread
stalls behind its vocoder and a server's streams and event loop behind any
one call. Measured here: an AOTInductor vocoder and a TorchScript decoder in
two threads took 0.99x the time of running them one after the other; through
this module, 0.61x (1.65x faster).

The package's shared library exports AOTInductor's C interface
(``AOTInductorModelContainerCreateWithDevice``, ``...Run``, ``...GetCallSpec``:
``torch/csrc/inductor/aoti_runtime/interface.h``), which ``ctypes`` calls
with the GIL released. Tensors cross it as ``AtenTensorHandle``\\ s made and
taken back by ``torch._C._aoti`` (the helpers torch's own generated Python
wrappers use). A package whose model needs more than that interface (a
proxy executor for operators without a C shim, which the package then
describes in a JSON file beside the library), or any layout this module does
not know, is refused with :class:`UnsupportedPackage`, and the caller loads it
with ``aoti_load_package`` instead.
"""

from __future__ import annotations

import ctypes
import tempfile
import zipfile
from pathlib import Path

import torch
from torch.utils import _pytree as pytree

MODEL_FOLDER = "data/aotinductor/"
"""Where an AOTInductor package keeps a model's library, under its top folder."""


class UnsupportedPackage(RuntimeError):
    """The package is not one this module runs (the caller falls back to ``aoti_load_package``)."""


def _capsule_api():
    """``PyCapsule_GetPointer`` and ``PyCapsule_New`` with their C signatures (handles travel as capsules)."""
    api = ctypes.pythonapi
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    api.PyCapsule_New.restype = ctypes.py_object
    api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return api


def _library(package: Path, folder: Path) -> Path:
    """Extract ``package`` into ``folder``; the model's one shared library, or why this module cannot run it."""
    try:
        with zipfile.ZipFile(package) as archive:
            names = archive.namelist()
            libraries = [n for n in names if MODEL_FOLDER in n and n.endswith(".so")]
            extern = [n for n in names if MODEL_FOLDER in n and n.endswith(".json") and not n.endswith("_metadata.json")]
            if len(libraries) != 1 or extern:
                raise UnsupportedPackage(f"{package}: {len(libraries)} model libraries, {len(extern)} extern-kernel files")
            archive.extract(libraries[0], folder)
    except zipfile.BadZipFile as exc:
        raise UnsupportedPackage(f"{package}: not a zip archive ({exc})") from exc
    return folder / libraries[0]


class AotiModel:
    """One AOTInductor package's model, called like the module it was exported from (tensors in, outputs out).

    The library is extracted to a private temporary folder kept while the model
    lives; its container holds one model instance, so calls of several threads
    run one at a time, waiting in the container (not on the GIL).
    """

    def __init__(self, package: Path):
        self._folder = tempfile.TemporaryDirectory(prefix="ttsstack-aoti-")
        self._lib = ctypes.CDLL(str(_library(Path(package), Path(self._folder.name))))
        self._api = _capsule_api()
        lib, handle = self._lib, ctypes.c_void_p()
        lib.AOTInductorModelContainerRun.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                     ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        lib.AOTInductorModelContainerDelete.argtypes = [ctypes.c_void_p]
        if hasattr(lib, "AOTInductorGetLastError"):
            lib.AOTInductorGetLastError.restype = ctypes.c_char_p
        self._check(lib.AOTInductorModelContainerCreateWithDevice(ctypes.byref(handle), ctypes.c_size_t(1), b"cpu", None),
                    "create the model")
        self._container = handle
        outputs, in_spec, out_spec = ctypes.c_size_t(), ctypes.c_char_p(), ctypes.c_char_p()
        self._check(lib.AOTInductorModelContainerGetNumOutputs(handle, ctypes.byref(outputs)), "count outputs")
        self._check(lib.AOTInductorModelContainerGetCallSpec(handle, ctypes.byref(in_spec), ctypes.byref(out_spec)),
                    "read the call spec")
        self._outputs = outputs.value
        self._out_spec = pytree.treespec_loads(out_spec.value.decode())

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            last_error = getattr(self._lib, "AOTInductorGetLastError", None)
            message = (last_error() or b"").decode(errors="replace") if last_error else ""
            raise RuntimeError(f"AOTInductor model: could not {what}: {message or f'error code {code}'}")

    def __call__(self, *tensors: torch.Tensor):
        """The model's outputs for ``tensors`` (positional, as exported), structured as exported."""
        api = self._api
        handles = torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(list(tensors))
        inputs = (ctypes.c_void_p * len(handles))(*(api.PyCapsule_GetPointer(h, None) for h in handles))
        outputs = (ctypes.c_void_p * self._outputs)()
        # the container takes (frees) the input handles and fills the output ones
        code = self._lib.AOTInductorModelContainerRun(self._container, inputs, len(handles), outputs,
                                                      self._outputs, None, None)
        self._check(code, "run")
        flat = torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs(
            [api.PyCapsule_New(outputs[i], None, None) for i in range(self._outputs)])
        return pytree.tree_unflatten(flat, self._out_spec)

    def __del__(self):
        container = getattr(self, "_container", None)
        if container:
            self._lib.AOTInductorModelContainerDelete(container)
