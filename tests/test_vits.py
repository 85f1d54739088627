"""The VITS conformance addon (Hugging Face ``VitsModel``) against the library's own forward, on every backend.

One tiny addon is built per session (``addons/conformance/vits.py --tiny`` sizes,
one bucket per dim) and compiled for every test backend. The library is fed
the noise the runtime draws (``randn_returns``), so its waveform is the
reference the addon's must equal.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from ttsstack.addon import AddonError, parse_spec
from ttsstack.compiler import compile_addon
from ttsstack.loader import load
from ttsstack.parity import check_parity
from ttsstack.runtime.blocks.upsampler import repeats_of
from ttsstack.runtime.blocks.windows import stream_windows
from ttsstack.runtime.noise import BLOCK, noise_steps
from ttsstack.runtime.network import with_length_inputs
from ttsstack.tolerances import STREAMING

from .conftest import REPO, TEST_BACKENDS

pytest.importorskip("transformers", reason='VITS conformance needs Hugging Face transformers: pip install -e ".[transformers]"')

SCRIPT = REPO / "addons" / "conformance" / "vits.py"
TEXTS = ("Hi.", "The quick brown fox jumps over the lazy dog, twice.")


def load_script(name: str = "vits_conformance"):
    """The build script as a module (it is a script in ``addons/``, not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vits = load_script()


@pytest.fixture(scope="session")
def vits_compiled(tmp_path_factory) -> Path:
    """The tiny VITS addon (T_text bucket 32, T_frames bucket 64; context 16 frames) compiled for every test backend."""
    root = tmp_path_factory.mktemp("vits")
    source, _ = vits.build_addon(root / "addon", vits.tiny_config(), text_buckets=[32], frame_buckets=[64], max_frames=4096)
    compile_addon(source, root / "compiled", TEST_BACKENDS, progress=False)
    return root / "compiled"


@pytest.fixture(scope="module")
def eager(vits_compiled):
    """The addon's voice on the eager backend (its runners are the exported programs themselves)."""
    return load(vits_compiled, backend="eager", compile_if_needed=False)


@pytest.fixture(scope="module")
def parity_report(vits_compiled):
    """``ttsstack parity`` of every test backend against eager (the reference run once)."""
    return check_parity(vits_compiled, backends=TEST_BACKENDS, texts=TEXTS)


@pytest.fixture(scope="module")
def library():
    """The library's model with the addon's seeded weights: the reference."""
    return vits.seeded_model(vits.tiny_config())


def noise_for(spec, network: str, length: int) -> torch.Tensor:
    """The one noise input of ``network`` as the runtime draws it for ``length`` steps."""
    net = spec.networks[network]
    ((name, noise),) = net.noise.items()
    return noise_steps(name, noise, net.inputs[name], 0, length)


def library_run(library, spec, tokens: torch.Tensor, speed: float = 1.0, frame_noise: bool = True):
    """``VitsModel.forward`` on ``tokens`` fed the runtime's noise (or none at frame level): waveform, flow input."""
    captured = {}
    drawn = noise_for(spec, "waveform", spec.dims["T_frames"].max)  # the first T_frames of it are any utterance's

    def frames(shape):
        noise = drawn[..., :shape[-1]]
        return noise if frame_noise else torch.zeros_like(noise)

    def keep_flow_input(_module, args) -> None:
        captured["latents"] = args[0]

    hook = library.flow.register_forward_pre_hook(keep_flow_input)
    try:
        with torch.no_grad(), vits.randn_returns(noise_for(spec, "text_encoder", tokens.shape[1]), frames):
            out = library(tokens, speaking_rate=library.config.speaking_rate * speed)
    finally:
        hook.remove()
    return out.waveform, captured["latents"]


@pytest.mark.parametrize("speed", [1.0, 1.7])
def test_addon_networks_equal_the_library_forward(eager, library, speed):
    """The exported programs, the durations repeated in between, give ``VitsModel.forward``'s waveform exactly."""
    spec, text, waveform = eager.spec, eager.runners["text_encoder"], eager.runners["waveform"]
    tokens = torch.tensor([[5, 9, 12, 1, 20, 7, 3, 14, 9, 2, 30]])
    length = tokens.shape[1]
    with torch.no_grad():
        encoded = text({"tokens": tokens, "text_mask": torch.ones(1, length), "speed": torch.tensor([speed]),
                        "duration_noise": noise_for(spec, "text_encoder", length)})
        frames = encoded["prior"][0].repeat_interleave(repeats_of(encoded["durations"]), 0).unsqueeze(0)
        audio = waveform({"frames": frames, "frames_mask": torch.ones(1, frames.shape[1]),
                          "frame_noise": noise_for(spec, "waveform", frames.shape[1])})["audio"]
    want, _ = library_run(library, spec, tokens, speed=speed)
    assert torch.equal(audio, want)


def test_upsampler_is_the_vits_alignment_path(eager, library):
    """The Upsampler's frames are the prior VITS expands with ``generate_path`` (``attn @ m_p``): equal with no frame noise."""
    text = "Hello, world."
    (tokens,) = eager.frontend.pieces(text, eager.max_tokens)
    frames = torch.from_numpy(eager.synthesize(text))
    _, latents = library_run(library, eager.spec, tokens, frame_noise=False)
    flow_size = library.config.flow_size
    assert torch.equal(frames[:, :flow_size], latents[0].T)


@pytest.mark.parametrize("speed", [1.0, 1.7])
def test_voice_audio_equals_the_library_waveform(eager, library, speed):
    """End to end on the eager backend: text, Encoders, Upsampler, the streamed waveform network = ``VitsModel.forward``.

    ``speed`` reaches the text network (the library's ``speaking_rate``); the mel is not resampled.
    """
    text = "The quick brown fox."
    (tokens,) = eager.frontend.pieces(text, eager.max_tokens)
    want, _ = library_run(library, eager.spec, tokens, speed=speed)
    got = torch.from_numpy(eager.synthesize_audio(text, speed=speed)).unsqueeze(0)
    assert got.shape == want.shape
    assert STREAMING.passes((got - want).abs().max().item(), want.abs().max().item())


@pytest.mark.parametrize("backend", TEST_BACKENDS)
def test_compiles_and_passes_parity(parity_report, backend):
    """Every backend against the eager reference: each network, the prior frames and the waveform, whole and streamed."""
    rows = [r for r in parity_report.rows if r.backend == backend]
    assert [r.stage for r in rows] == ["text_encoder", "waveform", "mel, whole", "audio, whole", "mel, streamed", "audio, streamed"]
    assert all(r.passed for r in rows), parity_report.table()


def test_waveform_network_streams_exactly_on_windows(eager):
    """The waveform network on overlapping windows of its declared context, noise by frame index, equals a whole run."""
    spec, runner = eager.spec, eager.runners["waveform"]
    net = spec.networks["waveform"]
    hop = spec.audio.hop_length
    frames = torch.randn(1, 3 * BLOCK + 5, net.inputs["frames"].shape[-1], generator=torch.Generator().manual_seed(3))
    ((noise_name, noise),) = net.noise.items()

    def call(window: torch.Tensor, start: int) -> torch.Tensor:
        inputs = {"frames": window, noise_name: noise_steps(noise_name, noise, net.inputs[noise_name], start, window.shape[1])}
        with torch.no_grad():
            return runner(with_length_inputs(net, inputs, window.shape[1], window.shape[1]))["audio"]

    emitted = 0

    def run(window: torch.Tensor, left: int, count: int) -> torch.Tensor:
        nonlocal emitted
        out = call(window, emitted - left)
        emitted += count
        return out[:, left * hop:(left + count) * hop]

    pieces = iter(frames.split(7, dim=1))
    streamed = torch.cat(list(stream_windows(pieces, run, net.context, iter([9, 20, 40] + [50] * 10))), dim=1)
    whole = call(frames, 0)
    assert streamed.shape == whole.shape
    assert STREAMING.passes((streamed - whole).abs().max().item(), whole.abs().max().item())


def test_declared_context_is_the_receptive_radius(library):
    """``receptive_radius`` bounds how far a frame moves samples, within two frames."""
    synthesis = vits.VitsSynthesis(library)
    hop = library.config.upsample_rates[0] * library.config.upsample_rates[1]
    count = 48
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(1, count, 2 * library.config.flow_size, generator=gen) * 0.1
    noise = torch.zeros(1, library.config.flow_size, count)
    radius = 0
    with torch.no_grad():
        base = synthesis(frames, noise)
        for j in (count // 2 - 1, count // 2):
            moved = frames.clone()
            moved[0, j] += 1.0
            owners = ((synthesis(moved, noise) - base).abs()[0] > 0).nonzero().reshape(-1) // hop
            radius = max(radius, int((owners - j).abs().max()))
    declared = vits.receptive_radius(library.config)
    assert radius <= declared <= radius + 2


def test_noise_is_the_same_for_a_step_whatever_the_window():
    spec = parse_spec(_noise_spec({"noise": {"scale": 0.5, "seed": 7}}))
    net = spec.networks["net"]
    whole = noise_steps("noise", net.noise["noise"], net.inputs["noise"], 0, 3 * BLOCK)
    assert whole.shape == (1, 2, 3 * BLOCK)
    for start, length in ((0, 1), (BLOCK - 3, 9), (2 * BLOCK + 1, BLOCK - 1)):
        window = noise_steps("noise", net.noise["noise"], net.inputs["noise"], start, length)
        assert torch.equal(window, whole[..., start:start + length])
    assert 0.3 < whole.std().item() < 0.7  # standard normal times the scale
    other = parse_spec(_noise_spec({"noise": {"scale": 0.5, "seed": 8}})).networks["net"]
    assert not torch.equal(noise_steps("noise", other.noise["noise"], other.inputs["noise"], 0, 3 * BLOCK), whole)


def _noise_spec(noise: dict, dtype: str = "float32", shape=(1, 2, "T")) -> dict:
    return {
        "format": 2, "name": "noisy",
        "audio": {"sample_rate": 8000, "hop_length": 64, "win_length": 256, "n_fft": 256, "n_mels": 8},
        "frontend": {"type": "characters", "symbols": "_ab"},
        "networks": {"net": {"role": "encoder", "file": "net.pt2", "noise": noise,
                             "inputs": {"tokens": {"shape": [1, "T"], "dtype": "int64"},
                                        "noise": {"shape": list(shape), "dtype": dtype}},
                             "outputs": {"encoded": {"shape": [1, "T", 2]}}}},
        "dims": {"T": {"max": 512}},
        "stack": [{"type": "Encoders"}],
    }


@pytest.mark.parametrize("noise, dtype, shape, message", [
    ({"nois": {}}, "float32", (1, 2, "T"), "networks.net.noise.nois: 'nois' is not an input of the network"),
    ({"noise": {}}, "int64", (1, 2, "T"), "networks.net.noise.noise: a noise input must be float"),
    ({"noise": {}}, "float32", (1, 2, 3), "networks.net.noise.noise: a noise input must be float with exactly one named dim"),
    ({"noise": {"scale": "loud"}}, "float32", (1, 2, "T"), "networks.net.noise.noise.scale"),
    ({"noise": {"sed": 1}}, "float32", (1, 2, "T"), "networks.net.noise.noise.sed"),
])
def test_bad_noise_entries_are_refused_by_name(noise, dtype, shape, message):
    with pytest.raises(AddonError, match=message.replace(".", r"\.")):
        parse_spec(_noise_spec(noise, dtype, shape))


def test_build_script_names_the_extra_without_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(SystemExit, match=r'pip install -e "\.\[transformers\]"'):
        load_script("vits_without_transformers")


def test_an_autoregressive_step_network_with_noise_is_refused_at_load():
    from ttsstack.runtime.blocks.base import StackError
    from ttsstack.runtime.builder import plan_stack

    from .tiny_tacotron import tiny_tacotron_spec

    spec = {**tiny_tacotron_spec(), "format": 2}
    step = spec["networks"]["decoder_step"]
    step["inputs"]["step_noise"] = {"shape": [1, "T_text"]}
    step["noise"] = {"step_noise": {}}
    with pytest.raises(StackError, match="network 'decoder_step' declares noise inputs \\(step_noise\\), which an autoregressive"):
        plan_stack(parse_spec(spec))
