"""Sequence blocks that run networks: one network, and the automatic ``Encoders`` containers."""

from __future__ import annotations

import torch
from pydantic import Field

from ..network import step_length, with_length_inputs
from ..noise import with_noise_inputs
from ..registry import BLOCKS
from .base import BlockConfig, SequenceBlock, TensorInfo, Tensors, Wiring
from .containers import ParallelSequenceBlockContainer, SequenceBlockContainer


@BLOCKS.register("Network")
class NetworkBlock(SequenceBlock):
    """Runs one named network on whole tensors.

    Config: ``network`` (its name in ``addon.yaml``); optional ``inputs`` /
    ``outputs`` maps from the network's tensor names to the names used in the
    stack, for networks from code bases with other naming. Inputs the network
    declares as ``lengths``/``mask``/``noise`` are filled by the runtime.
    """

    class Config(BlockConfig):
        network: str
        inputs: dict[str, str] = Field(default_factory=dict)
        outputs: dict[str, str] = Field(default_factory=dict)

    def __init__(self, config, ctx, path):
        super().__init__(config, ctx, path)
        self.runner = ctx.runner(config.network, f"{path}.network")
        self.spec = self.runner.spec
        self.input_names = {n: config.inputs.get(n, n) for n in self.spec.data_inputs}
        self.output_names = {n: config.outputs.get(n, n) for n in self.spec.outputs}

    @property
    def label(self) -> str:
        return f"{self.path} (network '{self.config.network}')"

    def describe(self) -> str:
        return f"Network {self.config.network} [{self.spec.role}, context {self.spec.context}]"

    def reads(self) -> list[str]:
        return list(self.input_names.values())

    def writes(self) -> list[str]:
        return list(self.output_names.values())

    def check(self, wiring: Wiring) -> None:
        for net_name, name in self.input_names.items():
            t = self.spec.inputs[net_name]
            wiring.read(self.label, name, rank=len(t.shape), dtype=t.dtype)
        for net_name, name in self.output_names.items():
            wiring.write(self.label, name, TensorInfo.of(self.spec.outputs[net_name], self.label))

    def run(self, tensors: Tensors) -> Tensors:
        inputs = {net_name: tensors[name] for net_name, name in self.input_names.items()}
        outputs = self.call(with_noise_inputs(self.spec, inputs, 0, step_length(self.spec, inputs)))
        return {name: outputs[net_name] for net_name, name in self.output_names.items()}

    def call(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the network on whole, unpadded inputs, its noise given (static backends override this)."""
        length = step_length(self.spec, inputs)
        return self.runner(with_length_inputs(self.spec, dict(inputs), length, length))


class _EncodersConfig(BlockConfig):
    tokens: str = "tokens"


def _encoder_blocks(ctx, path: str) -> list[SequenceBlock]:
    encoders = ctx.spec.networks_with_role("encoder")
    return [ctx.build({"type": "Network", "network": name}, f"{path}.{name}") for name in encoders]


class _FrontendAlias(SequenceBlock):
    """Exposes the frontend's ``tokens`` under the name the encoders read."""

    def __init__(self, name: str, path: str):
        self.config = BlockConfig(type="alias")
        self.path = path
        self.name = name

    def reads(self) -> list[str]:
        return ["tokens"]

    def writes(self) -> list[str]:
        return [self.name]

    def check(self, wiring: Wiring) -> None:
        info = wiring.read(self.path, "tokens")
        wiring.write(self.path, self.name, info)

    def run(self, tensors: Tensors) -> Tensors:
        return {self.name: tensors["tokens"]}


class _EncoderChildren:
    """Fills a container with one Network block per ``encoder`` network (and the tokens alias)."""

    Config = _EncodersConfig

    def build_children(self, config, ctx, path: str) -> list:
        blocks = _encoder_blocks(ctx, path)
        if config.tokens != "tokens":
            blocks.insert(0, _FrontendAlias(config.tokens, f"{path}.tokens"))
        return blocks


@BLOCKS.register("Encoders")
class Encoders(_EncoderChildren, SequenceBlockContainer):
    """Every network whose role is ``encoder``, run once all its inputs exist.

    Config: ``tokens`` renames the frontend's output for networks that read
    the token ids under another name.
    """


@BLOCKS.register("CustomizedEncoders")
class CustomizedEncoders(_EncoderChildren, ParallelSequenceBlockContainer):
    """The same encoders as ``Encoders``, with independent ones run in parallel threads."""
