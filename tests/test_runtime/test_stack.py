"""Stack building: encoders in any order, custom blocks by config, wiring errors at load."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import ttsstack
from ttsstack.addon import AddonError, parse_spec
from ttsstack.compiler import compile_addon
from ttsstack.runtime import BLOCKS, StreamableBlock
from ttsstack.runtime.blocks.base import BlockConfig, StackError
from ttsstack.runtime.builder import plan_stack

from ..tiny_addon import tiny_spec

TEXT = "Testing encoders, twice."


def _stack(sequence=None, streams=None):
    return [{
        "type": "StreamablePipeline",
        "sequence_block": sequence or {"type": "Encoders"},
        "streamable_block": {"type": "StreamableStack", "stack": streams or [{"type": "Upsampler"}, {"type": "Decoder"}]},
    }]


def _load_with_stack(folder, stack, backend="cpu"):
    data = yaml.safe_load((folder / "addon.yaml").read_text())
    data["stack"] = stack
    (folder / "addon.yaml").write_text(yaml.safe_dump(data, sort_keys=False))  # input order is positional
    compile_addon(folder, folder, [], progress=False)  # re-hash the edited config; every artifact is kept
    return ttsstack.load(folder, backend=backend, compile_if_needed=False)


def test_encoders_and_customized_encoders_agree(tiny_compiled, tiny_compiled_copy):
    plain = ttsstack.load(tiny_compiled, backend="cpu").synthesize(TEXT)
    parallel = _load_with_stack(tiny_compiled_copy, _stack({"type": "CustomizedEncoders"}))
    np.testing.assert_array_equal(parallel.synthesize(TEXT), plain)


def test_encoders_run_in_dependency_order_whatever_the_file_order():
    spec = tiny_spec()
    spec["networks"] = dict(reversed(list(spec["networks"].items())))
    root = plan_stack(parse_spec(spec))
    encoders = root.children()[0]
    assert [b.config.network for level in encoders.levels for b in level] == ["text_encoder", "duration_encoder"]


def test_explicit_container_of_network_blocks(tiny_compiled, tiny_compiled_copy):
    plain = ttsstack.load(tiny_compiled, backend="cpu").synthesize(TEXT)
    sequence = {"type": "SequenceBlockContainer", "blocks": [
        {"type": "Network", "network": "duration_encoder"}, {"type": "Network", "network": "text_encoder"}]}
    voice = _load_with_stack(tiny_compiled_copy, _stack(sequence))
    np.testing.assert_array_equal(voice.synthesize(TEXT), plain)


@pytest.fixture
def gain_block():
    @BLOCKS.register("TestGain")
    class Gain(StreamableBlock):
        """Multiplies a stream by a constant: a user block registered with one decorator."""

        class Config(BlockConfig):
            factor: float = 2.0
            stream_name: str = "mel"

        def check(self, wiring, upstream):
            wiring.read(self.label, upstream, rank=3)
            return upstream

        def stream(self, tensors, upstream):
            for chunk in upstream:
                yield chunk * self.config.factor

    yield Gain
    BLOCKS.unregister("TestGain")


def test_custom_block_named_in_config_runs(tiny_compiled, tiny_compiled_copy, gain_block):
    plain = ttsstack.load(tiny_compiled, backend="cpu").synthesize(TEXT)
    streams = [{"type": "Upsampler"}, {"type": "Decoder"}, {"type": "TestGain", "factor": 3.0}]
    voice = _load_with_stack(tiny_compiled_copy, _stack(streams=streams))
    np.testing.assert_allclose(voice.synthesize(TEXT), 3.0 * plain, rtol=1e-6)


def test_nested_stack_in_a_streamable_slot(tiny_compiled, tiny_compiled_copy):
    plain = ttsstack.load(tiny_compiled, backend="cpu").synthesize(TEXT)
    streams = [{"type": "StreamableStack", "stack": [{"type": "Upsampler"}, {"type": "Decoder"}]}]
    voice = _load_with_stack(tiny_compiled_copy, _stack(streams=streams))
    np.testing.assert_array_equal(voice.synthesize(TEXT), plain)


def test_unknown_block_type_lists_known_ones(tiny_compiled_copy):
    with pytest.raises(StackError, match=r"stack\[0\]\.streamable_block\.stack\[1\]\.type: unknown block type 'Decodr'; known: .*Decoder"):
        _load_with_stack(tiny_compiled_copy, _stack(streams=[{"type": "Upsampler"}, {"type": "Decodr"}]))


def test_tensor_nobody_writes():
    stack = _stack(streams=[{"type": "Upsampler", "durations": "lengths"}, {"type": "Decoder"}])
    with pytest.raises(StackError, match=r"stack\[0\]\.streamable_block\.stack\[0\] \(Upsampler\): reads tensor 'lengths', which nobody writes"):
        plan_stack(parse_spec(tiny_spec(stack=stack)))


def test_two_writers_of_one_name():
    sequence = {"type": "SequenceBlockContainer", "blocks": [
        {"type": "Encoders"}, {"type": "Network", "network": "duration_encoder"}]}
    with pytest.raises(StackError, match=r"writes tensor 'durations', already written by"):
        plan_stack(parse_spec(tiny_spec(stack=_stack(sequence))))


def test_rank_mismatch():
    stack = _stack(streams=[{"type": "Upsampler", "encoded": "durations", "durations": "durations"}, {"type": "Decoder"}])
    with pytest.raises(StackError, match=r"tensor 'durations' must have rank 3"):
        plan_stack(parse_spec(tiny_spec(stack=stack)))


def test_stream_order_mistake():
    with pytest.raises(StackError, match=r"Decoder\): consumes stream 'frames' but no streamable block comes before it"):
        plan_stack(parse_spec(tiny_spec(stack=_stack(streams=[{"type": "Decoder"}]))))


def test_unknown_block_field_is_an_error():
    with pytest.raises(StackError, match=r"stack\[0\]\.streamable_block\.stack\[0\]\.chunk: Extra inputs"):
        plan_stack(parse_spec(tiny_spec(stack=_stack(streams=[{"type": "Upsampler", "chunk": 3}, {"type": "Decoder"}]))))


def test_stack_errors_are_addon_errors():
    assert issubclass(StackError, AddonError)
