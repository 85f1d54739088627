"""Static-shape backends: padding never leaks (autoregressive decoders too), wrong shapes are refused, unpaddable networks fail."""

from __future__ import annotations

from itertools import islice

import numpy as np
import onnxruntime
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
import pytest
import torch

import ttsstack
from ttsstack.addon import load_addon, parse_spec
from ttsstack.backends import BackendError
from ttsstack.runtime import RuntimeOptions
from ttsstack.backends.base import example_inputs
from ttsstack.backends.onnx_static import OnnxStaticBackend
from ttsstack.cli import main
from ttsstack.backends.static_blocks import StaticAutoregressiveDecoder, StaticDecoder, StaticPostnet, fit_chunk
from ttsstack.compiler import CompileError, compile_addon, read_manifest
from ttsstack.runtime.builder import BuildContext
from ttsstack.runtime.network import bind_inputs
from ttsstack.runtime.registry import BACKENDS
from ttsstack.tolerances import for_backend

from .tiny_addon import SYMBOLS, build_global_addon, tiny_spec
from .tiny_tacotron import tiny_tacotron_spec

STATIC = ["onnx-static", "neuron"]
# tiny buckets: T_text [16, 32], T_frames [32, 64]; one under, at and over each, and past the largest
BOUNDARIES = {"T_text": [1, 15, 16, 17, 31, 32, 33, 70], "T_frames": [5, 31, 32, 33, 63, 64, 65, 150]}


def _network_block(folder, backend: str, network: str):
    voice = ttsstack.load(folder, backend=backend)
    ctx = BuildContext(voice.spec, voice.runners, BACKENDS.get(backend).block_variants)
    return ctx.build({"type": "Network", "network": network}, f"test.{network}")


def _data(spec, length: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    inputs = {}
    for name, tensor in spec.data_inputs.items():
        shape = [length if isinstance(d, str) else d for d in tensor.shape]
        if tensor.dtype == "int64":
            inputs[name] = torch.randint(1, len(SYMBOLS), shape, generator=gen)
        else:
            inputs[name] = torch.randn(shape, generator=gen)
    return inputs


@pytest.mark.parametrize("backend", STATIC)
@pytest.mark.parametrize("network", ["text_encoder", "duration_encoder", "decoder"])
def test_static_network_equals_dynamic_around_every_bucket_boundary(tiny_compiled, backend, network):
    static, dynamic = _network_block(tiny_compiled, backend, network), _network_block(tiny_compiled, "onnx", network)
    dim = next(d for t in static.spec.inputs.values() for _, d in t.named_dims)
    tol = for_backend(backend)
    for length in BOUNDARIES[dim]:
        inputs = _data(static.spec, length, seed=length)
        with torch.inference_mode():
            got, want = static.call(inputs), dynamic.call(inputs)
        for name in want:
            assert got[name].shape == want[name].shape, (network, length)
            error = (got[name] - want[name]).abs().max().item()
            assert tol.passes(error, want[name].abs().max().item()), (network, length, error)


@pytest.mark.parametrize("backend", STATIC)
def test_streamed_static_voice_equals_dynamic_voice(tiny_compiled, backend):
    static, dynamic = ttsstack.load(tiny_compiled, backend=backend), ttsstack.load(tiny_compiled, backend="onnx")
    tol = for_backend(backend)
    for tokens in BOUNDARIES["T_text"]:
        text = ("abcdefghij" * 10)[:tokens]
        got, want = static.synthesize(text), dynamic.synthesize(text)
        assert got.shape == want.shape, tokens
        assert tol.passes(float(np.abs(got - want).max()), float(np.abs(want).max())), tokens


def test_static_decoder_chunks_shrink_to_fill_a_bucket():
    assert fit_chunk(128, [64, 128, 256], 16) == 112  # a 144-frame window would be padded to 256
    assert fit_chunk(128, [40, 112, 144], 16) == 128  # already a full bucket
    assert fit_chunk(1000, [64, 128, 256], 16) == 240
    assert fit_chunk(32, [64, 128, 256], 8) == 32  # no bucket that small: padded, never grown


@pytest.mark.parametrize("backend", STATIC)
def test_static_voice_decodes_in_bucket_sized_windows(tiny_compiled, backend):
    voice = ttsstack.load(tiny_compiled, backend=backend, options=RuntimeOptions(first_chunk_frames=32))
    decoder = next(block for _, block in voice.tree() if isinstance(block, StaticDecoder))
    # tiny frame buckets 32, 64 and decoder context 2: the first chunk, 32 frames plus Griffin-Lim's
    # lookahead of 2 (window 36), shrinks to 30 in the 32 bucket, the 64, 128, 256-frame ones after
    # it to 60 in the 64 bucket
    assert list(islice(decoder.chunk_schedule(), 4)) == [30, 60, 60, 60]


def test_onnx_runtime_rejects_any_other_shape(tiny_compiled):
    entry = next(a for a in read_manifest(tiny_compiled).for_backend("onnx-static") if a.network == "decoder")
    assert entry.bucket == {"T_frames": 32} and entry.shapes["frames"] == [1, 32, 8]
    session = onnxruntime.InferenceSession(str(tiny_compiled / entry.file), providers=["CPUExecutionProvider"])
    fits = {"frames": np.zeros((1, 32, 8), np.float32), "frames_mask": np.ones((1, 32), np.float32)}
    assert session.run(None, fits)[0].shape == (1, 32, 8)
    wrong = {"frames": np.zeros((1, 33, 8), np.float32), "frames_mask": np.ones((1, 33), np.float32)}
    with pytest.raises(InvalidArgument, match=r"(?s)Got invalid dimensions for input: frames.*Got: 33 Expected: 32"):
        session.run(None, wrong)


@pytest.mark.parametrize("backend", STATIC)
def test_runner_refuses_a_size_that_is_no_bucket(tiny_compiled, backend):
    runner = ttsstack.load(tiny_compiled, backend=backend).runners["decoder"]
    assert runner.static_lengths == {"T_frames": [32, 64]}
    inputs = {"frames": torch.zeros(1, 40, 8), "frames_mask": torch.ones(1, 40)}
    with pytest.raises(BackendError, match=rf"network 'decoder' on backend '{backend}': input 'frames' has T_frames=40, "
                                           r"but the compiled artifacts accept only T_frames in \[32, 64\]"):
        runner(inputs)


def test_buckets_override_drives_the_static_artifacts(tiny_addon, tmp_path):
    out = tmp_path / "out"
    compile_addon(tiny_addon, out, ["neuron"], buckets={"T_text": [8, 24, 48]}, progress=False)
    entries = read_manifest(out).for_backend("neuron")
    assert sorted(a.bucket["T_text"] for a in entries if a.network == "text_encoder") == [8, 24, 48]
    assert load_addon(out).spec.dims["T_text"].buckets == [8, 24, 48]
    voice = ttsstack.load(out, backend="neuron")
    assert voice.runners["duration_encoder"].static_lengths == {"T_text": [8, 24, 48]}


def test_batch_network_gets_every_length_bucket_at_every_batch_size():
    """Batch buckets multiply a `batch: true` network's length buckets; batch 1 keeps its plain bucket."""
    spec = parse_spec(tiny_tacotron_spec())
    assert OnnxStaticBackend().buckets(spec.networks["postnet"], spec.dims, [1, 4]) == [
        {"T_frames": 32}, {"T_frames": 64}, {"T_frames": 32, "batch": 4}, {"T_frames": 64, "batch": 4}]
    plain = parse_spec(tiny_spec())
    assert OnnxStaticBackend().buckets(plain.networks["duration_encoder"], plain.dims, [1, 4]) == [{"T_text": 16}, {"T_text": 32}]


@pytest.mark.parametrize("backend", STATIC)
def test_a_call_of_an_uncompiled_batch_size_is_refused(tiny_tacotron_compiled, backend):
    """The tiny Tacotron's static artifacts take batch 1 and 2: a batch of 2 runs, one of 3 is refused by name."""
    runner = ttsstack.load(tiny_tacotron_compiled, backend, warmup=False).runners["postnet"]
    assert runner.batch_sizes == [1, 2]
    assert runner({"frames": torch.zeros(2, 32, 8), "frames_mask": torch.ones(2, 32)})["mel"].shape == (2, 32, 8)
    with pytest.raises(BackendError, match=rf"network 'postnet' on backend '{backend}': input 'frames' has batch 3, "
                                           r"but the compiled artifacts take only batch sizes \[1, 2\].*--buckets batch="):
        runner({"frames": torch.zeros(3, 32, 8), "frames_mask": torch.ones(3, 32)})


def test_batch_buckets_override_drives_the_static_artifacts(tiny_tacotron, tmp_path, capsys):
    """`--buckets batch=1,3` compiles each length bucket at batch 1 and 3; the manifest and inspect show them."""
    out = tmp_path / "out"
    compile_addon(tiny_tacotron, out, ["neuron"], buckets={"batch": [1, 3], "T_text": [16], "T_frames": [32]}, progress=False)
    entries = {(a.network, a.bucket.get("batch", 1)): a for a in read_manifest(out).for_backend("neuron")}
    assert sorted(entries) == [(net, batch) for net in ("decoder_step", "encoder", "postnet") for batch in (1, 3)]
    assert entries["postnet", 3].bucket == {"T_frames": 32, "batch": 3}
    assert entries["postnet", 3].file == "artifacts/neuron/postnet.T_frames32.batch3.neuron.pt"
    assert entries["postnet", 3].shapes == {"frames": [3, 32, 8], "frames_mask": [3, 32], "mel": [3, 32, 8]}
    assert entries["postnet", 1].shapes["frames"] == [1, 32, 8]
    assert load_addon(out).spec.batch_dim.buckets == [1, 3]
    assert ttsstack.load(out, "neuron", warmup=False).runners["decoder_step"].batch_sizes == [1, 3]
    assert main(["inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "  batch (axis 0 of batch networks): max 8, buckets [1, 3]" in printed
    assert "postnet [postnet, context 2, batch]" in printed
    assert "{'T_frames': 32, 'batch': 3} fp32 artifacts/neuron/postnet.T_frames32.batch3.neuron.pt" in printed


def _unpaddable(**network):
    spec = tiny_spec()
    spec["networks"]["text_encoder"].update(network)
    return parse_spec(spec)


@pytest.mark.parametrize("change, message", [
    ({"context": "unbounded", "mask": None},
     r"context unbounded and no mask or lengths input: static backend 'onnx-static' pads pieces to a T_text bucket, "
     r"and padding would change every output; declare `mask: INPUT`.*or `lengths: INPUT`"),
    ({"mask": None}, r"context 1 and no mask or lengths input.*would change the outputs within 1 steps of a piece's end"),
])
def test_network_that_padding_would_change_is_refused(change, message):
    spec = _unpaddable(**change)
    with pytest.raises(BackendError, match=message):
        OnnxStaticBackend().buckets(spec.networks["text_encoder"], spec.dims)


def test_pointwise_network_needs_no_mask():
    spec = parse_spec(tiny_spec())
    assert OnnxStaticBackend().buckets(spec.networks["duration_encoder"], spec.dims) == [{"T_text": 16}, {"T_text": 32}]


def test_dim_without_buckets_is_refused():
    spec = tiny_spec()
    spec["dims"]["T_frames"] = {"max": 4096}
    parsed = parse_spec(spec)
    with pytest.raises(BackendError, match=r"dim 'T_frames' has no buckets.*--buckets T_frames="):
        OnnxStaticBackend().buckets(parsed.networks["decoder"], parsed.dims)


def test_unpaddable_network_fails_to_compile_and_the_rest_is_written(tmp_path):
    addon = build_global_addon(tmp_path / "addon", lengths=False)
    out = tmp_path / "out"
    with pytest.raises(CompileError, match=r"text_encoder \[neuron\]: context unbounded and no mask or lengths input"):
        compile_addon(addon, out, ["cpu", "neuron"], progress=False)
    manifest = read_manifest(out)
    assert len(manifest.for_backend("cpu")) == 3
    assert {a.network for a in manifest.for_backend("neuron")} == {"duration_encoder", "decoder"}


@pytest.fixture(scope="module")
def global_compiled(tmp_path_factory):
    """The tiny addon with an unbounded, ``lengths``-declaring text encoder, compiled for neuron (eager is the reference)."""
    folder = tmp_path_factory.mktemp("global")
    compile_addon(build_global_addon(folder / "addon"), folder / "out", ["neuron"], progress=False)
    return folder / "out"


def test_unbounded_encoder_is_padded_whole_with_its_lengths_set(global_compiled):
    static, reference = _network_block(global_compiled, "neuron", "text_encoder"), _network_block(global_compiled, "eager", "text_encoder")
    for length in [1, 15, 16, 17, 31, 32]:
        inputs = _data(static.spec, length, seed=length)
        with torch.inference_mode():
            got, want = static.call(inputs)["encoded"], reference.call(inputs)["encoded"]
        assert got.shape == want.shape and (got - want).abs().max().item() <= 1e-5, length
    with pytest.raises(BackendError, match=r"text_encoder.*33 steps along T_text exceed the largest bucket \(32\)"):
        static.call(_data(static.spec, 33, seed=0))


def test_text_is_split_to_the_largest_bucket_for_an_unbounded_static_encoder(global_compiled):
    static, dynamic = ttsstack.load(global_compiled, backend="neuron"), ttsstack.load(global_compiled, backend="eager")
    assert (static.max_tokens, dynamic.max_tokens) == (32, 256)
    text = "a long sentence of many words that is much longer than thirty two tokens, to be split"
    assert all(p.shape[1] <= 32 for p in static.frontend.pieces(text, static.max_tokens))
    dynamic.max_tokens = static.max_tokens  # the same pieces, run unpadded
    got, want = static.synthesize(text), dynamic.synthesize(text)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5


# tiny Tacotron T_text buckets [8, 16]: one under, at and over each; 40 tokens are split to the largest bucket
TACOTRON_TOKENS = [7, 8, 9, 15, 16, 40]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("backend", STATIC)
def test_static_autoregressive_voice_equals_dynamic_around_every_bucket_boundary(tiny_tacotron_compiled, backend, monkeypatch):
    static, dynamic = ttsstack.load(tiny_tacotron_compiled, backend=backend), ttsstack.load(tiny_tacotron_compiled, backend="onnx")
    blocks = [b for _, b in static.tree()]
    assert {type(b) for b in blocks} >= {StaticAutoregressiveDecoder, StaticPostnet}
    assert static.max_tokens == 16
    dynamic.max_tokens = static.max_tokens  # the same pieces, run unpadded
    decoder = next(b for b in blocks if isinstance(b, StaticAutoregressiveDecoder))
    buckets = []
    bind = decoder.bind_step
    monkeypatch.setattr(decoder, "bind_step", lambda prepared: buckets.append(prepared["memory"].shape[1]) or bind(prepared))
    tol = for_backend(backend)
    for tokens in TACOTRON_TOKENS:
        text = ("abcdefghij" * 10)[:tokens]
        buckets.clear()
        got, want = static.synthesize(text), dynamic.synthesize(text)
        assert got.shape == want.shape == (3 * tokens, 8), tokens
        assert tol.passes(float(np.abs(got - want).max()), float(np.abs(want).max())), tokens
        assert buckets == ([8] if tokens <= 8 else [16] if tokens <= 16 else [16, 16, 8]), (tokens, buckets)


@pytest.mark.parametrize("backend", STATIC)
def test_static_step_runner_binds_its_bucket(tiny_tacotron_compiled, backend):
    runner = ttsstack.load(tiny_tacotron_compiled, backend=backend, warmup=False).runners["decoder_step"]
    inputs = example_inputs(runner.spec, {"T_text": 16})
    fixed = {name: inputs[name] for name in ("memory", "memory_mask")}
    states = {name: inputs[name] for name in runner.spec.states}
    with torch.inference_mode():
        got, want = bind_inputs(runner, fixed)(states), runner(inputs)
    assert all(torch.equal(got[name], want[name]) for name in want)
    too_long = {name: torch.cat([t, t[:, :4]], dim=1) for name, t in fixed.items()}
    with pytest.raises(BackendError, match=rf"network 'decoder_step' on backend '{backend}': input 'memory' has T_text=20, "
                                           r"but the compiled artifacts accept only T_text in \[8, 16\]"):
        bind_inputs(runner, too_long)


def test_static_decoder_with_memory_beyond_the_largest_bucket_names_the_network(tiny_tacotron_compiled):
    voice = ttsstack.load(tiny_tacotron_compiled, backend="onnx-static", warmup=False)
    decoder = next(b for _, b in voice.tree() if isinstance(b, StaticAutoregressiveDecoder))
    memory = torch.zeros(1, 17, 8)
    with pytest.raises(BackendError, match=r"AutoregressiveDecoder\) network 'decoder_step': 17 steps along T_text exceed "
                                           r"the largest bucket \(16\)"):
        decoder.prepare({"memory": memory})
