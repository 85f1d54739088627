"""Read a ``torch.export`` program (``.pt2``) from an untrusted addon without running its author's code.

``torch.export.load`` is not safe on foreign files: it unpickles sample inputs
and pickled weights with ``weights_only=False`` when the safe load fails, loads
AOTInductor shared libraries and plain pickles when the archive holds them,
hands the program's symbolic shape expressions to ``sympy.sympify`` (``eval``)
and ``exec``s its serialized guards when the module is built. So
:func:`read_program` reads the archive itself first and lets torch deserialize
only what it has checked:

* integrity: every member's CRC (a flipped byte names the member);
* layout: only the members ``torch.export.save`` writes for one program
  (no AOTInductor code, no custom or opaque objects, no legacy formats);
* pickles: the sample inputs and every weight or constant marked for pickle
  load through ``torch.load(weights_only=True)``, with no fallback, and
  torch's own load then runs under ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``;
* code in the graph: shape expressions and guards must be plain arithmetic
  on sizes, and every call in the loaded graph must be a registered operator
  or a symbolic-size operation.

Anything else is refused with a :class:`ProgramFileError` naming the file and
the member. Genuine files written by ``torch.export.save`` pass unchanged.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import math
import operator
import os
import re
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.export.pt2_archive import PT2ArchiveReader

MODEL = "model"  # the one program name torch.export.save writes
_FIXED_MEMBERS = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_SAMPLE_INPUTS = f"data/sample_inputs/{MODEL}.pt"
_MODEL_JSON = f"models/{MODEL}.json"
_WEIGHTS_CONFIG = f"data/weights/{MODEL}_weights_config.json"
_CONSTANTS_CONFIG = f"data/constants/{MODEL}_constants_config.json"
_PAYLOAD = re.compile(r"data/weights/weight_\d+|data/constants/tensor_\d+|extra/[A-Za-z0-9_.-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# sympy's srepr writes a Float by its decimal string (``Float('0.0033333333333333335', precision=53)``), as
# torch.export does for a size computed through a float scale (``F.interpolate(scale_factor=1/300)``).
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
# Node targets as serialized: operators (torch.ops.*, extension ops "#ns:op") and size arithmetic.
_TARGET = re.compile(r"torch\.ops\.[A-Za-z0-9_.]+|_operator\.[a-z_]+|math\.[a-z]+|torch\._?sym_[a-z]+|#[A-Za-z0-9_]+:[A-Za-z0-9_.]+")

# Calls a graph may hold besides registered operators: symbolic size arithmetic.
_SIZE_FUNCTIONS = {
    operator.getitem, operator.eq, operator.ne, operator.le, operator.ge, operator.lt, operator.gt,
    operator.neg, operator.pos, operator.mul, operator.add, operator.sub, operator.floordiv,
    operator.mod, operator.pow, operator.truediv, operator.and_, operator.or_, operator.lshift,
    operator.rshift, math.trunc, math.ceil, math.floor, math.sqrt, torch.sym_not, torch.sym_int,
    torch.sym_float, torch.sym_ite, torch.sym_max, torch.sym_min, torch.sym_sqrt,
}
# Names a guard may call: what torch's shape-guard printer writes.
_GUARD_CALLS = {"Max", "Min", "Abs", "abs", "max", "min", "int", "float", "Eq", "Ne", "Mod", "FloorDiv", "CeilDiv"}
_MATH_FUNCTIONS = {"floor", "ceil", "trunc", "sqrt"}
_ARITHMETIC = (
    ast.Expression, ast.Load, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Constant, ast.operator,
    ast.unaryop, ast.cmpop, ast.boolop,
)

_force_lock = threading.Lock()


class ProgramFileError(ValueError):
    """A ``.pt2`` refused as corrupt or unsafe; the message names the file and the member."""


def read_program(path: str | Path) -> torch.export.ExportedProgram:
    """The ``ExportedProgram`` in ``path``, read without running code from the file (see the module docstring)."""
    path = Path(path)
    data = path.read_bytes()
    members = _checked_members(path, data)
    try:
        reader = PT2ArchiveReader(io.BytesIO(data))
        if set(reader.get_file_names()) != set(members):
            raise ProgramFileError(f"{path}: the archive's directory reads differently to torch and to zipfile; refusing it")
        pickled = {member: reader.read_bytes(member) for member in _pickled_members(path, reader)}
        model_json = reader.read_bytes(_MODEL_JSON)
    except (RuntimeError, AssertionError) as exc:  # torch's reader: a bad archive_format, an unreadable record
        raise ProgramFileError(f"{path}: not a readable .pt2 archive: {exc}") from None
    for member, payload in pickled.items():
        _load_weights_only(path, member, payload)
    _check_model_json(path, model_json)
    with _weights_only_everywhere():
        try:
            program = torch.export.load(io.BytesIO(data))
        except Exception as exc:  # torch's own errors on a file we could not fully vet
            raise ProgramFileError(f"{path}: not a loadable torch.export program: {type(exc).__name__}: {exc}") from None
    _check_graph_calls(path, program)
    return program


def _checked_members(path: Path, data: bytes) -> list[str]:
    """Member names below the archive's root folder, after the CRC and layout checks."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        for name in names:
            with archive.open(name) as member:  # reading to the end checks the CRC
                while member.read(1 << 20):
                    pass
    except zipfile.BadZipFile as exc:
        bad = re.search(r"Bad CRC-32 for file '([^']*)'", str(exc))
        if bad:
            member = bad.group(1).split("/", 1)[-1]
            raise ProgramFileError(f"{path}: member '{member}' is corrupt (CRC mismatch); re-export the network") from None
        raise ProgramFileError(f"{path}: not a readable .pt2 archive: {exc}") from None
    except (zlib.error, OSError, EOFError, ValueError) as exc:
        raise ProgramFileError(f"{path}: not a readable .pt2 archive: {exc}") from None
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ProgramFileError(f"{path}: member '{duplicate}' appears twice in the archive")
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or any("/" not in name for name in names):
        raise ProgramFileError(f"{path}: not a torch.export archive (members must share one root folder)")
    members = [name.split("/", 1)[1] for name in names]
    for member in members:
        if not (
            member in _FIXED_MEMBERS
            or member in (_MODEL_JSON, _SAMPLE_INPUTS, _WEIGHTS_CONFIG, _CONSTANTS_CONFIG)
            or _PAYLOAD.fullmatch(member)
        ):
            raise ProgramFileError(
                f"{path}: member '{member}' is not part of a torch.export program "
                "(ttsstack loads no AOTInductor code, custom objects or legacy archives from an addon)"
            )
    for required in (_MODEL_JSON, _SAMPLE_INPUTS, _WEIGHTS_CONFIG, _CONSTANTS_CONFIG):
        if required not in members:
            raise ProgramFileError(f"{path}: member '{required}' is missing; re-export with torch.export.save")
    return members


def _pickled_members(path: Path, reader) -> list[str]:
    """Every member torch would unpickle: the sample inputs and weights or constants marked ``use_pickle``."""
    pickled = [_SAMPLE_INPUTS]
    for config_name, folder in ((_WEIGHTS_CONFIG, "data/weights/"), (_CONSTANTS_CONFIG, "data/constants/")):
        try:
            config = json.loads(reader.read_bytes(config_name))["config"]
            entries = [(fqn, e["path_name"], bool(e["use_pickle"])) for fqn, e in config.items()]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProgramFileError(f"{path}: member '{config_name}' is malformed: {exc}") from None
        for fqn, name, use_pickle in entries:
            member = folder + str(name)
            if not _PAYLOAD.fullmatch(member) or member.startswith("data/constants/") != (folder == "data/constants/"):
                raise ProgramFileError(f"{path}: member '{config_name}': entry '{fqn}' names '{name}', not a tensor payload")
            if use_pickle:
                pickled.append(member)
    return pickled


def _load_weights_only(path: Path, member: str, payload: bytes) -> None:
    try:
        torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as exc:  # weights_only refusals are pickle.UnpicklingError; corrupt data raises others
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProgramFileError(
            f"{path}: member '{member}' cannot be loaded as plain tensors (torch.load weights_only=True): "
            f"{first_line}; ttsstack never unpickles arbitrary objects from an addon"
        ) from None


def _check_model_json(path: Path, payload: bytes) -> None:
    """Refuse shape expressions and guards that are not plain size arithmetic (torch evaluates both)."""
    try:
        model = json.loads(payload)
    except ValueError as exc:
        raise ProgramFileError(f"{path}: member '{_MODEL_JSON}' is not JSON: {exc}") from None
    for expr in _values_of(model, "expr_str"):
        if not isinstance(expr, str) or not _is_sympy_expression(expr):
            raise ProgramFileError(f"{path}: member '{_MODEL_JSON}': shape expression {str(expr)[:80]!r} is not plain size arithmetic")
    for node in _values_of(model, "nodes"):
        for entry in node if isinstance(node, list) else [node]:
            target = entry.get("target") if isinstance(entry, dict) else None
            if not isinstance(target, str) or not _TARGET.fullmatch(target):
                name = entry.get("name") if isinstance(entry, dict) else None
                raise ProgramFileError(f"{path}: member '{_MODEL_JSON}': node {name!r} calls {str(target)[:80]!r}, which is not an operator")
    guards = model.get("guards_code", []) if isinstance(model, dict) else []
    for guard in guards if isinstance(guards, list) else [guards]:
        if not isinstance(guard, str) or not _is_size_guard(guard):
            raise ProgramFileError(f"{path}: member '{_MODEL_JSON}': guard {str(guard)[:80]!r} is not a plain check on input sizes")


def _values_of(node: Any, key: str) -> Iterator[Any]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if k == key:
                    yield v
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)


def _parse(text: str) -> ast.Expression | None:
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None


def _is_sympy_expression(text: str) -> bool:
    """``srepr``-style sympy: calls of capitalized sympy names on numbers, symbol names and sub-expressions."""
    tree = _parse(text)
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id[:1].isupper()):
                return False
            strings = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if strings and (node.func.id not in ("Symbol", "Float") or node.args[0] is not strings[0] or len(strings) > 1):
                return False
            if strings and not (_IDENTIFIER if node.func.id == "Symbol" else _DECIMAL).fullmatch(strings[0].value):
                return False
            if any(not isinstance(k.value, ast.Constant) or k.arg is None for k in node.keywords):
                return False
        elif isinstance(node, ast.Name):
            if node.id.startswith("_"):
                return False
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, bool, str)):
                return False
        elif not isinstance(node, (*_ARITHMETIC, ast.keyword, ast.Tuple)):
            return False
    return True


def _is_size_guard(text: str) -> bool:
    """A guard like ``L['x'].size()[1] == L['y'].size()[1]``: sizes of named inputs, numbers, comparisons."""
    tree = _parse(text)
    if tree is None or "#" in text or "\n" in text:
        return False  # torch pastes the guard into a line of generated code
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if node.keywords:
                return False
            if isinstance(func, ast.Attribute) and func.attr == "size" and not node.args:
                continue
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math" and func.attr in _MATH_FUNCTIONS:
                continue
            if not (isinstance(func, ast.Name) and func.id in _GUARD_CALLS):
                return False
        elif isinstance(node, ast.Attribute):
            if node.attr != "size" and not (isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr in _MATH_FUNCTIONS):
                return False
        elif isinstance(node, ast.Name):
            if node.id not in {"L", "math"} | _GUARD_CALLS:
                return False
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not _IDENTIFIER.fullmatch(node.value):
                return False  # torch pastes guards into generated code, inside a string literal
            if not isinstance(node.value, (int, float, bool, str)):
                return False
        elif not isinstance(node, (*_ARITHMETIC, ast.Subscript)):
            return False
    return True


def _check_graph_calls(path: Path, program: torch.export.ExportedProgram) -> None:
    """Every ``call_function`` must be a registered operator or size arithmetic, never an arbitrary callable."""
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        if not isinstance(graph, torch.fx.Graph):
            continue
        for node in graph.nodes:
            if node.op not in ("call_function", "call_method", "call_module"):
                continue
            target = node.target
            if node.op == "call_function" and (
                isinstance(target, (torch._ops.OpOverload, torch._ops.HigherOrderOperator)) or target in _SIZE_FUNCTIONS
            ):
                continue
            raise ProgramFileError(
                f"{path}: member '{_MODEL_JSON}': node {node.name!r} calls {getattr(target, '__qualname__', target)!r}, "
                "which is not an operator"
            )


@contextlib.contextmanager
def _weights_only_everywhere() -> Iterator[None]:
    """Every ``torch.load`` in this process uses ``weights_only=True`` while inside (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``)."""
    with _force_lock:
        saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
        os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
