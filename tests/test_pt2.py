"""A source addon is untrusted: a crafted or corrupt ``.pt2`` is refused, naming the member, and runs nothing."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from ttsstack.addon import AddonError, load_addon
from ttsstack.backends.base import NetworkArtifacts
from ttsstack.backends.eager import EagerBackend
from ttsstack.compiler import compile_addon
from ttsstack.pt2 import ProgramFileError, read_program

NETWORK = "duration_encoder"  # the tiny addon's smallest program


class _Payload:
    """Unpickling this runs a shell command that creates ``marker`` (what an attacker's file would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _program_file(addon: Path) -> Path:
    return addon / load_addon(addon).spec.networks[NETWORK].file


def _rewrite(pt2: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> None:
    """Rewrite the archive with members (named below its root folder) replaced or added, as a tool would."""
    with zipfile.ZipFile(pt2) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    root = members[0][0].split("/", 1)[0]
    with zipfile.ZipFile(pt2, "w") as archive:
        for name, data in members:
            archive.writestr(name, replace.get(name.split("/", 1)[1], data))
        for name, data in (add or {}).items():
            archive.writestr(f"{root}/{name}", data)


def _member(pt2: Path, name: str) -> bytes:
    with zipfile.ZipFile(pt2) as archive:
        return archive.read(next(n for n in archive.namelist() if n.split("/", 1)[1] == name))


def _pickle(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _pickled_weight(pt2: Path, payload: bytes) -> tuple[dict[str, bytes], str]:
    """Members that mark the first weight for pickle and hold ``payload`` there."""
    config = json.loads(_member(pt2, "data/weights/model_weights_config.json"))
    entry = next(iter(config["config"].values()))
    entry["use_pickle"] = True
    member = f"data/weights/{entry['path_name']}"
    return {"data/weights/model_weights_config.json": json.dumps(config).encode(), member: payload}, member


def test_genuine_programs_load(tiny_addon):
    program = read_program(_program_file(tiny_addon))
    assert isinstance(program, torch.export.ExportedProgram)
    encoded = torch.randn(1, 5, 8)
    assert torch.equal(program.module()(encoded), torch.export.load(_program_file(tiny_addon)).module()(encoded))


@pytest.mark.parametrize("where", ["sample_inputs", "pickled_weight"])
def test_crafted_pickle_runs_nothing_and_names_the_member(tiny_copy, tmp_path, where):
    marker = tmp_path / "pwned"
    pt2 = _program_file(tiny_copy)
    if where == "sample_inputs":
        member = "data/sample_inputs/model.pt"
        replace = {member: _pickle(_Payload(marker))}
    else:
        replace, member = _pickled_weight(pt2, _pickle(_Payload(marker)))
    _rewrite(pt2, replace)
    with pytest.raises(AddonError, match=f"member '{member}'.*weights_only=True"):
        load_addon(tiny_copy).load_program(NETWORK)
    with pytest.raises(ProgramFileError, match=f"member '{member}'"):
        EagerBackend().load(NetworkArtifacts(NETWORK, load_addon(tiny_copy).spec.networks[NETWORK], pt2))
    with pytest.raises(Exception, match=f"member '{member}'"):
        compile_addon(tiny_copy, tmp_path / "out", ["cpu"], progress=False)
    assert not marker.exists()


def test_tensor_pickled_weight_still_loads(tiny_copy):
    """A weight marked for pickle that holds a plain tensor (what torch.export.save writes for subclasses) loads."""
    pt2 = _program_file(tiny_copy)
    config = json.loads(_member(pt2, "data/weights/model_weights_config.json"))
    fqn, entry = next(iter(config["config"].items()))
    weight = torch.nn.Parameter(read_program(pt2).state_dict[fqn].detach().clone())
    replace, _ = _pickled_weight(pt2, _pickle(weight))
    _rewrite(pt2, replace)
    assert torch.equal(read_program(pt2).state_dict[fqn], weight)


def test_shape_expression_is_not_evaluated(tiny_copy, tmp_path):
    """torch hands ``expr_str`` to sympy.sympify, which is eval: anything but size arithmetic is refused."""
    marker = tmp_path / "pwned"
    pt2 = _program_file(tiny_copy)
    model = _member(pt2, "models/model.json").decode()
    assert '"expr_str": "' in model
    evil = f"__import__('os').system('touch {marker}')"
    model = model.replace('"expr_str": "', f'"expr_str": "{evil} or ', 1)
    _rewrite(pt2, {"models/model.json": model.encode()})
    with pytest.raises(ProgramFileError, match="member 'models/model.json': shape expression"):
        read_program(pt2)
    assert not marker.exists()


def test_float_scale_in_shape_expression_loads(tmp_path):
    """A size computed through a float scale (``interpolate(scale_factor=1/3)``) is written as ``Float('0.33...')``:
    it loads, and a ``Float`` holding anything but a decimal is refused."""

    class Downsample(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=1 / 3, mode="linear")

    steps = torch.export.Dim("T", min=6, max=3000)
    program = torch.export.export(Downsample(), (torch.randn(1, 2, 30),), dynamic_shapes=({2: steps},))
    pt2 = tmp_path / "downsample.pt2"
    torch.export.save(program, pt2)
    assert read_program(pt2).module()(torch.randn(1, 2, 90)).shape == (1, 2, 30)

    model = _member(pt2, "models/model.json").decode()
    assert "Float('0.33333333333333331'" in model
    _rewrite(pt2, {"models/model.json": model.replace("Float('0.33333333333333331'", "Float('__import__'").encode()})
    with pytest.raises(ProgramFileError, match="member 'models/model.json': shape expression"):
        read_program(pt2)


def test_guard_code_is_not_executed(tiny_copy, tmp_path):
    """torch ``exec``s serialized guards when it builds the module: only checks on input sizes pass."""
    marker = tmp_path / "pwned"
    pt2 = _program_file(tiny_copy)
    model = json.loads(_member(pt2, "models/model.json"))
    model["guards_code"] = [f"__import__('os').system('touch {marker}') == 0"]
    _rewrite(pt2, {"models/model.json": json.dumps(model).encode()})
    with pytest.raises(ProgramFileError, match="member 'models/model.json': guard"):
        read_program(pt2).module()
    assert not marker.exists()


def test_graph_may_call_only_operators(tiny_copy, tmp_path):
    """A node whose target resolves to a Python function reachable from torch (here os.system) is refused."""
    marker = tmp_path / "pwned"
    pt2 = _program_file(tiny_copy)
    model = json.loads(_member(pt2, "models/model.json"))
    node = model["graph_module"]["graph"]["nodes"][0]
    node["target"] = "torch.serialization.os.system"
    node["inputs"] = [{"name": "command", "arg": {"as_string": f"touch {marker}"}, "kind": 1}]
    _rewrite(pt2, {"models/model.json": json.dumps(model).encode()})
    with pytest.raises(ProgramFileError, match="member 'models/model.json': node '.*' calls 'torch.serialization.os.system', which is not an operator"):
        read_program(pt2).module()(torch.randn(1, 5, 8))
    assert not marker.exists()


@pytest.mark.parametrize("member", ["data/aotinductor/model/model.so", "data/constants/opaque_obj_0", "extra/../x"])
def test_members_outside_the_format_are_refused(tiny_copy, member):
    pt2 = _program_file(tiny_copy)
    _rewrite(pt2, {}, add={member: b"\x7fELF"})
    with pytest.raises(ProgramFileError, match=f"member '{member}' is not part of a torch.export program"):
        read_program(pt2)


def test_flipped_bytes_name_the_corrupt_member(tiny_copy, tmp_path):
    """64 flipped bytes inside a weight: torch would load other numbers; the CRC check names the member."""
    pt2 = _program_file(tiny_copy)
    data = bytearray(pt2.read_bytes())
    with zipfile.ZipFile(pt2) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size if "/data/weights/weight_" in i.filename else -1)
    name_length, extra_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"), int.from_bytes(
        data[info.header_offset + 28 : info.header_offset + 30], "little"
    )
    start = info.header_offset + 30 + name_length + extra_length
    for i in range(start, start + min(64, info.file_size)):
        data[i] ^= 0xFF
    pt2.write_bytes(bytes(data))
    member = info.filename.split("/", 1)[1]
    with pytest.raises(AddonError, match=f"member '{member}' is corrupt"):
        load_addon(tiny_copy).load_program(NETWORK)
    with pytest.raises(Exception, match=f"member '{member}' is corrupt"):
        compile_addon(tiny_copy, tmp_path / "out", ["cpu"], progress=False)
