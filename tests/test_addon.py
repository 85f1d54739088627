"""The addon format: validation errors name the entry at fault; the authoring helper round-trips."""

from __future__ import annotations

import pytest
import yaml

from ttsstack.addon import AddonError, load_addon, parse_spec

from .tiny_addon import tiny_spec


def _with(path_items, value):
    spec = tiny_spec()
    node = spec
    for key in path_items[:-1]:
        node = node[key]
    node[path_items[-1]] = value
    return spec


def test_tiny_spec_is_valid():
    spec = parse_spec(tiny_spec())
    assert list(spec.networks) == ["text_encoder", "duration_encoder", "decoder"]
    assert spec.networks["decoder"].bounded and spec.networks["decoder"].context == 2


def test_unknown_dim_names_field_path_and_known_dims():
    spec = _with(["networks", "decoder", "inputs", "frames", "shape"], [1, "T_frame", 8])
    with pytest.raises(AddonError, match=r"networks\.decoder\.inputs\.frames\.shape\[1\]: unknown dim 'T_frame'; known: T_frames, T_text"):
        parse_spec(spec)


def test_schema_errors_list_every_path():
    spec = tiny_spec()
    spec["networks"]["decoder"]["context"] = -3
    spec["audio"]["n_mels"] = "many"
    with pytest.raises(AddonError) as err:
        parse_spec(spec)
    assert "networks.decoder.context" in str(err.value)
    assert "audio.n_mels" in str(err.value)


@pytest.mark.parametrize(
    "buckets, message",
    [([], "must not be empty"), ([64, 32], "strictly increasing"), ([32, 512], "exceeds max 256")],
)
def test_bad_buckets_are_config_errors(buckets, message):
    with pytest.raises(AddonError, match=rf"dims\.T_text.*{message}"):
        parse_spec(_with(["dims", "T_text", "buckets"], buckets))


def test_unknown_top_level_key_rejected():
    with pytest.raises(AddonError, match="networkz"):
        parse_spec(tiny_spec(networkz={}))


def test_path_escaping_addon_folder_fails_at_load(tiny_copy):
    data = yaml.safe_load((tiny_copy / "addon.yaml").read_text())
    data["networks"]["decoder"]["file"] = "../../etc/passwd"
    (tiny_copy / "addon.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(AddonError, match=r"networks\.decoder\.file: path '\.\./\.\./etc/passwd' escapes the addon folder"):
        load_addon(tiny_copy)


def test_missing_network_file(tiny_copy):
    (tiny_copy / "networks" / "decoder.pt2").unlink()
    with pytest.raises(AddonError, match=r"networks\.decoder\.file: .* does not exist"):
        load_addon(tiny_copy)


def test_state_pairs_are_checked():
    spec = tiny_spec()
    spec["networks"]["decoder"]["states"] = {"frames": {"output": "nope"}}
    with pytest.raises(AddonError, match=r"networks\.decoder\.states\.frames: state output 'nope'"):
        parse_spec(spec)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda step: step["states"].update(nope={"output": "new_step"}),
         r"states\.nope: state input 'nope' is not an input of the network"),
        (lambda step: step["states"]["step"].update(output="new_stepp"),
         r"states\.step: state output 'new_stepp' is not an output of the network"),
        (lambda step: step["outputs"]["new_hidden"].update(shape=[1, 9]),
         r"states\.hidden: input shape \[1, 8\] does not match output 'new_hidden' shape \[1, 9\]"),
        (lambda step: step["outputs"]["new_step"].update(dtype="int64"),
         r"states\.step: input dtype float32 does not match output 'new_step' dtype int64"),
    ],
    ids=["input", "output", "shape", "dtype"],
)
def test_unpaired_states_fail_at_load_naming_the_state(tiny_tacotron, tmp_path, change, message):
    import shutil

    folder = tmp_path / "addon"
    shutil.copytree(tiny_tacotron, folder)
    data = yaml.safe_load((folder / "addon.yaml").read_text())
    change(data["networks"]["decoder_step"])
    (folder / "addon.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(AddonError, match=rf"addon\.yaml: networks\.decoder_step\.{message}"):
        load_addon(folder)


def test_lengths_input_must_exist():
    spec = _with(["networks", "text_encoder", "lengths"], "text_lengths")
    with pytest.raises(AddonError, match=r"networks\.text_encoder\.lengths: 'text_lengths' is not an input"):
        parse_spec(spec)


def test_written_addon_loads_and_programs_run(tiny_addon):
    import torch

    addon = load_addon(tiny_addon)
    program = addon.load_program("decoder")
    out = program.module()(torch.randn(1, 77, 8), torch.ones(1, 77))
    assert out.shape == (1, 77, 8)  # the dim stayed dynamic
