"""Batching across streams: concurrent streams' calls run as one, each stream's output as if run alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import ttsstack
from ttsstack.addon import AddonError, NetworkSpec, TensorSpec, parse_spec
from ttsstack.backends.base import ModuleRunner
from ttsstack.backends.static import StaticRunner
from ttsstack.compiler import CompileError, compile_addon
from ttsstack.compiler.validate import BatchRowsError, ValidationFailure, check_batch_rows, validate_runner
from ttsstack.runtime.batching import BatchingRunner, _Call, batching_runners, call_key, join_calls, split_outputs
from ttsstack.runtime.builder import RuntimeOptions
from ttsstack.tolerances import BATCHED, for_backend

from ..concurrent_streams import batch_sizes, batched_round
from ..tiny_addon import tiny_spec
from ..tiny_tacotron import tiny_tacotron_modules, tiny_tacotron_spec

TEXTS = ["hello there", "a much longer sentence than the others", "short", "the quick brown fox"]


@pytest.mark.parametrize("backend", ["cpu", "onnx", "onnx-static", "neuron"])
def test_concurrent_streams_run_batched_and_equal_each_stream_alone(tiny_tacotron_compiled, backend):
    """Four streams of different lengths decode together: networks run batches of several rows, and every
    stream's mel equals its run alone within the backend's tolerance plus BATCHED. Static backends run
    batches of at most 2, the largest batch bucket compiled, on the batch-2 artifacts."""
    alone = ttsstack.load(tiny_tacotron_compiled, backend)
    batched = ttsstack.load(tiny_tacotron_compiled, backend, options=RuntimeOptions(batch=4))
    want = [np.concatenate(list(alone.stream(text))) for text in TEXTS]
    got = batched_round(batched, TEXTS)
    tol = for_backend(backend).plus(BATCHED)
    for text, w, g in zip(TEXTS, want, got):
        assert g.shape == w.shape, text
        assert tol.passes(np.abs(g - w).max(), np.abs(w).max()), text
    assert isinstance(batched.runners["decoder_step"], BatchingRunner)
    if backend in ("onnx-static", "neuron"):
        assert batched.runners["decoder_step"].runner.batch_sizes == [1, 2]
        assert max(size for sizes in batch_sizes(batched).values() for size in sizes) == 2, batch_sizes(batched)


def test_batch_off_leaves_runners_alone(tiny_tacotron_compiled):
    voice = ttsstack.load(tiny_tacotron_compiled, "cpu", warmup=False)
    assert not any(isinstance(runner, BatchingRunner) for runner in voice.runners.values())


def test_a_static_runner_of_batch_one_only_is_not_batched():
    """Artifacts compiled at batch 1 only leave nothing to fill: the runner stays as it is; with batch 2 it is batched."""
    spec = parse_spec(tiny_tacotron_spec()).networks["postnet"]
    postnet = ModuleRunner(spec, tiny_tacotron_modules(3.0)["postnet"])
    single = StaticRunner("postnet", "onnx-static", spec, {(1, 32): postnet})
    double = StaticRunner("postnet", "onnx-static", spec, {(1, 32): postnet, (2, 32): postnet})
    runners = batching_runners({"single": single, "double": double}, max_batch=4, addon_max=8, wait_s=0.002)
    assert runners["single"] is single and single.batch_sizes == [1]
    assert isinstance(runners["double"], BatchingRunner) and runners["double"].max_batch == 2


def test_join_pads_the_shorter_call_and_split_crops_it_back():
    """The postnet's calls of 5 and 3 frames: one batch of 5 with the shorter row's mask zero past 3."""
    spec = parse_spec(tiny_tacotron_spec()).networks["postnet"]
    calls = [{"frames": torch.randn(1, n, 8), "frames_mask": torch.ones(1, n)} for n in (5, 3)]
    joined, lengths = join_calls(spec, calls)
    assert lengths == [5, 3]
    assert joined["frames"].shape == (2, 5, 8)
    assert joined["frames_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    outputs = split_outputs(spec, {"mel": joined["frames"] * 2}, lengths)
    assert [o["mel"].shape for o in outputs] == [(1, 5, 8), (1, 3, 8)]
    assert torch.equal(outputs[1]["mel"], calls[1]["frames"] * 2)


def test_join_fills_rows_up_to_a_batch_size():
    """A static artifact of batch 4 gets 4 rows for 3 calls (the first repeated); 3 outputs come back."""
    spec = parse_spec(tiny_tacotron_spec()).networks["postnet"]
    calls = [{"frames": torch.randn(1, 4, 8), "frames_mask": torch.ones(1, 4)} for _ in range(3)]
    joined, lengths = join_calls(spec, calls, rows=4)
    assert joined["frames"].shape[0] == 4 and torch.equal(joined["frames"][3], calls[0]["frames"][0])
    assert len(split_outputs(spec, {"mel": joined["frames"]}, lengths)) == 3


def test_calls_of_other_sizes_do_not_share_a_batch_without_a_mask():
    """Without a mask or lengths input, only calls of equal shapes may join; with one, the length is free."""
    masked = parse_spec(tiny_tacotron_spec()).networks["postnet"]
    axes = {"frames": 1, "frames_mask": 1}
    short = {"frames": torch.zeros(1, 3, 8), "frames_mask": torch.ones(1, 3)}
    long = {"frames": torch.zeros(1, 9, 8), "frames_mask": torch.ones(1, 9)}
    assert call_key(short, axes) == call_key(long, axes)
    assert call_key(short, {}) != call_key(long, {})
    assert masked.mask == "frames_mask"


class _RefusesNegative(nn.Module):
    """Doubles its input; raises when any row starts negative (a call that fails on its own input)."""

    def forward(self, x):
        if (x[:, 0, 0] < 0).any():
            raise ValueError("negative input")
        return x * 2


def test_a_failing_call_fails_only_its_own_stream():
    """A batch holding one bad call is rerun call by call: the others get their outputs, the bad one its error."""
    frames = TensorSpec(shape=[1, "T_frames", 8])
    spec = NetworkSpec(role="postnet", file="x.pt2", inputs={"frames": frames}, outputs={"mel": frames}, batch=True)
    runner = BatchingRunner(ModuleRunner(spec, _RefusesNegative()), max_batch=4, wait_s=0.05)
    values = [1.0, -1.0, 2.0, 3.0]
    results: dict[int, object] = {}
    start = threading.Barrier(len(values))

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = runner({"frames": torch.full((1, 2, 8), values[i])})["mel"][0, 0, 0].item()
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(values))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert isinstance(results[1], ValueError)
    assert [results[i] for i in (0, 2, 3)] == [2.0, 4.0, 6.0]


def test_batch_options_are_bounded():
    with pytest.raises(ValueError, match="batch must be between 1 and 64"):
        RuntimeOptions(batch=0)
    with pytest.raises(ValueError, match="batch_wait_ms must be between 0 and 1000"):
        RuntimeOptions(batch=2, batch_wait_ms=-1)


def test_batch_network_declares_one_at_axis_zero():
    spec = tiny_tacotron_spec()
    spec["networks"]["postnet"]["inputs"]["frames"]["shape"] = [2, "T_frames", 8]
    with pytest.raises(AddonError, match=r"networks.postnet.inputs.frames.shape: a `batch: true` network declares 1 at axis 0"):
        parse_spec(spec)


def test_batch_needs_format_2():
    with pytest.raises(AddonError, match=r": batch: needs `format: 2`.*\(also: networks.encoder.batch, "):
        parse_spec(tiny_tacotron_spec(format=1))


def test_batch_buckets_start_at_one():
    with pytest.raises(AddonError, match=r"batch.buckets: must start with 1"):
        parse_spec(tiny_tacotron_spec(batch={"max": 8, "buckets": [2, 4]}))


def test_a_cache_network_cannot_be_batched():
    spec = tiny_spec(format=2)
    net = spec["networks"]["decoder"]
    net.update(batch=True, position="pos", cache_mask="cmask")
    net["inputs"].update(kv={"shape": [1, "T_cache", 8]}, pos={"shape": [1], "dtype": "int64"}, cmask={"shape": [1, "T_cache"]})
    net["outputs"]["kv_out"] = {"shape": [1, 1, 8]}
    net["states"] = {"kv": {"output": "kv_out", "cache": "T_cache"}}
    spec["dims"]["T_cache"] = {"max": 64}
    with pytest.raises(AddonError, match=r"networks.decoder.batch: a network with cache states cannot be batched"):
        parse_spec(spec)


def test_compile_refuses_a_batch_network_exported_without_a_batch_axis(tiny_copy, tmp_path):
    """The tiny addon was exported at batch 1; declaring its decoder `batch: true` fails that network's jobs."""
    config = tiny_copy / "addon.yaml"
    data = yaml.safe_load(config.read_text())
    data["format"] = 2
    data["networks"]["decoder"]["batch"] = True
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CompileError, match=r"networks.decoder.batch: true, but the program does not run a batch of 2") as err:
        compile_addon(tiny_copy, tmp_path / "out", ["cpu"], progress=False)
    assert set(err.value.report.failed) == {"decoder [cpu]"}


class _IgnoresMask(nn.Module):
    """Subtracts the mean over every step, padded ones too: rows of a batch would see their padding."""

    def forward(self, frames, frames_mask):
        return frames - frames.mean(dim=1, keepdim=True)


def test_a_batch_network_whose_rows_see_their_padding_is_refused():
    """The compiler's program check on a postnet that ignores its mask names the batch entry; the tiny
    Tacotron's own postnet passes it."""
    spec = parse_spec(tiny_tacotron_spec())
    with pytest.raises(BatchRowsError, match=r"networks.postnet.batch: true, but a row of a batch differs"):
        check_batch_rows("postnet", ModuleRunner(spec.networks["postnet"], _IgnoresMask()), spec.dims)
    check_batch_rows("postnet", ModuleRunner(spec.networks["postnet"], tiny_tacotron_modules(3.0)["postnet"]), spec.dims)


class _MixesRows(nn.Module):
    """The tiny postnet pulled toward the batch's mean row: exact at batch 1, rows leak into each other at 2."""

    def __init__(self, postnet: nn.Module):
        super().__init__()
        self.postnet = postnet

    def forward(self, frames, frames_mask):
        return self.postnet(frames, frames_mask) + 0.1 * (frames.mean(dim=0, keepdim=True) - frames)


class _Recording(ModuleRunner):
    """A module runner that records the shape of every ``frames`` input it runs."""

    def __init__(self, spec, module, seen: list):
        super().__init__(spec, module)
        self.seen = seen

    def __call__(self, inputs):
        self.seen.append(tuple(inputs["frames"].shape))
        return super().__call__(inputs)


def test_a_static_batch_bucket_is_validated_on_rows_of_different_lengths():
    """A batch-3 bucket's artifact runs a full-length call and a shorter padded one, filled to 3 rows; a
    program whose rows leak passes at batch 1 and fails there, the shorter row named."""
    spec = parse_spec(tiny_tacotron_spec())
    net, postnet = spec.networks["postnet"], tiny_tacotron_modules(3.0)["postnet"]
    reference, tol = ModuleRunner(net, postnet), for_backend("onnx-static")
    seen: list = []
    validate_runner("postnet", "onnx-static", reference, _Recording(net, postnet, seen), spec.dims, {"T_frames": 32, "batch": 3}, tol)
    assert seen == [(3, 32, 8)]
    leaky = ModuleRunner(net, _MixesRows(postnet))
    validate_runner("postnet", "onnx-static", reference, leaky, spec.dims, {"T_frames": 32}, tol)
    with pytest.raises(ValidationFailure, match=r"mel at \{'batch row': 1, 'T_frames': 21\}: max abs error"):
        validate_runner("postnet", "onnx-static", reference, leaky, spec.dims, {"T_frames": 32, "batch": 3}, tol)


def test_no_dim_is_named_batch_beside_batch_networks():
    spec = tiny_tacotron_spec()
    spec["dims"]["batch"] = {"max": 4}
    with pytest.raises(AddonError, match=r"dims.batch: `batch` names the batch axis of `batch: true` networks"):
        parse_spec(spec)


def test_windows_of_very_different_lengths_do_not_share_a_batch():
    """An 8-frame and a 256-frame postnet window stay apart (padding would make the short one cost as
    much as the long one); 200 and 256 frames join. A step network's calls join whatever their memory length."""
    spec = parse_spec(tiny_tacotron_spec())
    postnet = BatchingRunner(ModuleRunner(spec.networks["postnet"], tiny_tacotron_modules(3.0)["postnet"]), 4, wait_s=0)

    def queued(runner, lengths):
        axes = {"frames": 1, "frames_mask": 1}
        calls = [{"frames": torch.zeros(1, n, 8), "frames_mask": torch.ones(1, n)} for n in lengths]
        runner._queue = [_Call(inputs, call_key(inputs, axes), n, 0) for inputs, n in zip(calls, lengths)]
        with runner._cond:
            return [call.length for call in runner._take()]

    assert queued(postnet, [8, 256]) == [8]
    assert queued(postnet, [256, 8, 200]) == [256, 200]
    step = BatchingRunner(ModuleRunner(spec.networks["decoder_step"], tiny_tacotron_modules(3.0)["decoder_step"]), 4, wait_s=0)
    assert queued(step, [8, 256]) == [8, 256]
