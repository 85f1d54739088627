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


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n_fft", 2**30, r"audio\.n_fft: Input should be less than or equal to 32768"),
        ("win_length", 2048, "audio: win_length: 2048 exceeds n_fft 256"),
        ("hop_length", 512, "audio: hop_length: 512 exceeds win_length 256"),
        ("n_mels", 200, "audio: n_mels: 200 exceeds the 129 frequency bins of n_fft 256"),
        ("fmax", 16000, "audio: fmax: 16000.0 exceeds the Nyquist frequency"),
        ("sample_rate", 10**9, r"audio\.sample_rate: Input should be less than or equal to 384000"),
    ],
)
def test_audio_settings_are_bounded(field, value, message):
    """``n_fft: 2**30`` once compiled and then asked the vocoder for 328 GiB; now the config is refused."""
    with pytest.raises(AddonError, match=message):
        parse_spec(_with(["audio", field], value))


def test_dim_sizes_are_bounded():
    with pytest.raises(AddonError, match=r"dims\.T_frames\.max: Input should be less than or equal to 268435456"):
        parse_spec(_with(["dims", "T_frames"], {"max": 2**40}))


def test_a_waveform_dim_may_hold_hours_of_samples():
    """A full-size VITS declares 16,384 frames of 256 samples: its ``T_samples`` max is 4.2 million."""
    assert parse_spec(_with(["dims", "T_frames"], {"max": 16384 * 256})).dims["T_frames"].max == 16384 * 256


def _alias_bomb(levels: int) -> str:
    """``levels`` anchors, each a list of ten aliases of the one before: 10**levels leaves in a few hundred bytes."""
    lines = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines)


def test_yaml_alias_bomb_is_refused_at_parse(tiny_copy):
    """A frontend (which accepts extra keys) holding a million aliased leaves is refused before anything expands it."""
    text = (tiny_copy / "addon.yaml").read_text()
    data = yaml.safe_load(text)
    del data["frontend"]
    bomb = "frontend:\n  type: characters\n  symbols: \"_ abc\"\n  pad: _\n" + _alias_bomb(6) + "\n"
    (tiny_copy / "addon.yaml").write_text(bomb + yaml.safe_dump(data, sort_keys=False))
    assert len((tiny_copy / "addon.yaml").read_text()) < 4000
    with pytest.raises(AddonError, match="addon.yaml: the document expands to more than 100,000 YAML nodes"):
        load_addon(tiny_copy)


def test_yaml_anchors_within_the_bound_load(tiny_copy):
    """Anchors are legitimate: a tensor spec shared by alias loads as usual."""
    data = yaml.safe_load((tiny_copy / "addon.yaml").read_text())
    shared = data["networks"]["text_encoder"]["outputs"]["encoded"]
    data["networks"]["duration_encoder"]["inputs"]["encoded"] = shared  # PyYAML writes an anchor and an alias
    text = yaml.safe_dump(data, sort_keys=False)
    assert "&id001" in text and "*id001" in text
    (tiny_copy / "addon.yaml").write_text(text)
    assert load_addon(tiny_copy).spec.networks["duration_encoder"].inputs["encoded"].shape == shared["shape"]


def test_recursive_yaml_is_refused(tiny_copy):
    text = (tiny_copy / "addon.yaml").read_text()
    (tiny_copy / "addon.yaml").write_text(text.replace("type: characters", "type: characters\n  loop: &loop [*loop]", 1))
    with pytest.raises(AddonError, match="addon.yaml: line 13: an alias refers to a node that contains it"):
        load_addon(tiny_copy)


def test_format_1_files_load_and_may_not_use_what_format_2_added():
    from ttsstack.addon import FORMAT_VERSION

    from .tiny_vocoder import vocoder_spec

    assert FORMAT_VERSION == 2
    assert parse_spec(tiny_spec()).format == 1  # a format-1 file, read as it is
    assert parse_spec(vocoder_spec()).format == 2
    with pytest.raises(AddonError, match=r"networks\.vocoder\.role: needs `format: 2`.*this file says format 1"):
        parse_spec({**vocoder_spec(), "format": 1})
    with pytest.raises(AddonError, match=r"format: Input should be 1 or 2"):
        parse_spec({**tiny_spec(), "format": 3})
