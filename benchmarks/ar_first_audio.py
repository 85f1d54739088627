"""First audio of autoregressive models at full size: decoder steps and milliseconds to the first mel and audio chunks.

Usage: python benchmarks/ar_first_audio.py [--model tacotron2,speecht5 | --addon DIR] [--backend cpu,onnx]
                                           [--runs 3] [--threads 1] [--work DIR] [--out DIR | --record]

The tiny demo's steps cost microseconds, so its first audio says nothing about
a real model's. This builds two full-size autoregressive addons with seeded
weights (the structure is what matters, not the voice):

- ``tacotron2``: the attention demo's model code (``addons/tacotron2-demo/model.py``)
  at Tacotron 2's published sizes (512-unit embedding and encoder, 1024-unit
  attention and decoder LSTMs, 256-unit prenet, 128-unit attention with 32
  location filters of width 31, 512-channel postnet), Griffin-Lim vocoder;
- ``tacotron2-vocoder``: the same with the demo voice's trained vocoder network
  instead of Griffin-Lim (``serve_load.py`` batches it across streams);
- ``speecht5``: SpeechT5 at its published size from the conformance addon
  (``addons/conformance/speecht5.py``), with its HiFi-GAN vocoder network.

Each is compiled for every ``--backend`` (into ``--work``, default
``benchmarks/out/ar_first_audio/``, reused when unchanged) and loaded with the
default runtime options. For each text, ``--runs`` times (the median is
kept), it streams until the first audio chunk (every autoregressive decoder
set to ``min_length_ratio: 2``, so that seeded weights whose stop token fires
at once still decode two frames per token) and records the decoder steps
run before the first mel chunk and before the first audio chunk, the
milliseconds to each, and the milliseconds per step. ``--addon DIR``
measures an existing autoregressive addon instead (source or compiled). The steps also run the
same on code without this change (``PYTHONPATH=<checkout>``), which is how the
"before" column of the README was measured.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
import yaml

import ttsstack
from ttsstack.addon import parse_spec
from ttsstack.runtime import Voice
from ttsstack.runtime.blocks.autoregressive import AutoregressiveDecoder
from ttsstack.runtime.registry import BACKENDS

from common import ListFlag, add_output_flags, output_dir, parser_for

HERE = Path(__file__).resolve().parent
ADDONS = HERE.parent / "addons"
DEMO_ADDON = HERE.parent / "ttsstack" / "demo_addon"
TEXTS = ["Attention, one frame at a time, until the stop token fires.",
         "The quick brown fox jumps over the lazy dog."]

TACOTRON2_SIZES = {
    "EMBED": 512, "MEMORY": 512, "PRENET": 256, "ATTENTION_RNN": 1024, "DECODER_RNN": 1024,
    "ATTENTION": 128, "LOCATION_FILTERS": 32, "LOCATION_KERNEL": 31, "POSTNET": 512,
}
"""Tacotron 2's published sizes (Shen et al. 2018; NVIDIA's reference hparams), by the demo model's constant names."""


@contextlib.contextmanager
def demo_sizes(sizes: dict[str, int]) -> Iterator[tuple[object, object]]:
    """The demo's ``model`` and ``build_addon`` modules with their size constants set to ``sizes``; restored after.

    The demo reads its sizes from module constants (its defaults are the
    trained demo's); ``build_addon`` derives its state shapes from them at
    import, so it is reloaded inside and again after.
    """
    sys.path.insert(0, str(ADDONS / "tacotron2-demo"))
    try:
        model = importlib.import_module("model")
        saved = {name: getattr(model, name) for name in sizes}
        try:
            for name, value in sizes.items():
                setattr(model, name, value)
            yield model, importlib.reload(importlib.import_module("build_addon"))
        finally:
            for name, value in saved.items():
                setattr(model, name, value)
            importlib.reload(importlib.import_module("build_addon"))
    finally:
        sys.path.remove(str(ADDONS / "tacotron2-demo"))


def build_tacotron2(folder: Path) -> Path:
    """Tacotron 2 at its published sizes with the demo's model code and seeded weights, decoding 2 to 4 frames
    per phoneme (its stop token is as random as its weights)."""
    with demo_sizes(TACOTRON2_SIZES) as (model, builder):
        torch.manual_seed(0)
        frontend = builder.phoneme_frontend(ADDONS / "tacotron2-demo" / "symbols.json")
        n_symbols = len(frontend["symbols"])
        net = model.Tacotron2Demo(n_symbols=n_symbols, n_mels=builder.N_MELS).eval()
        spec = builder.addon_spec(frontend) | {"name": "tacotron2-full"}
        decoder = spec["stack"][0]["streamable_block"]["stack"][0]
        decoder.update(min_length_ratio=2.0, max_length_ratio=4.0)  # a seeded stop token fires anywhere
        modules = {"encoder": net.encoder, "decoder_step": net.decoder_step, "postnet": net.postnet}
        ttsstack.write_addon(folder, spec, modules, builder.examples(n_symbols))
    return folder


def build_tacotron2_vocoder(folder: Path) -> Path:
    """``tacotron2`` with the demo voice's trained vocoder network in place of Griffin-Lim: what a production
    voice serves, and a vocoder that batches across streams (``batch: true``) like the other networks."""
    build_tacotron2(folder)
    demo = yaml.safe_load((DEMO_ADDON / "addon.yaml").read_text())
    spec = yaml.safe_load((folder / "addon.yaml").read_text())
    spec["name"] = "tacotron2-full-vocoder"
    spec["networks"]["vocoder"] = demo["networks"]["vocoder"]
    spec["dims"].update({dim: demo["dims"][dim] for dim in ("T_mel", "T_samples")})
    spec["vocoder"] = {"type": "Network", "network": "vocoder"}
    shutil.copyfile(DEMO_ADDON / demo["networks"]["vocoder"]["file"], folder / demo["networks"]["vocoder"]["file"])
    (folder / "addon.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def build_speecht5(folder: Path) -> Path:
    """SpeechT5 at its published size with seeded weights and its HiFi-GAN (the conformance addon's builder)."""
    sys.path.insert(0, str(ADDONS / "conformance"))
    try:
        speecht5 = importlib.import_module("speecht5")
    finally:
        sys.path.remove(str(ADDONS / "conformance"))
    config = speecht5.full_config()
    vocoder = speecht5.seeded_vocoder(speecht5.SpeechT5HifiGanConfig())
    # the builder's default T_frames max (16384) times HiFi-GAN's 256 samples per frame is over the format's
    # largest dim (1048576): 4096 frames (47 s) is the most a full-size addon can declare
    dims = {"T_text": {"max": config.max_text_positions, "buckets": [32, 64, 128, 256]},
            "T_frames": {"max": 4096, "buckets": [64, 128, 256]},
            "T_cache": {"max": min(1000, config.max_speech_positions)}}
    model = speecht5.seeded_model(config)
    return speecht5.build_addon(folder, model, vocoder, speecht5.seeded_speaker(config), dims=dims)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "tacotron2": build_tacotron2, "tacotron2-vocoder": build_tacotron2_vocoder, "speecht5": build_speecht5}


def addon_folder(model: str, work: Path) -> Path:
    """The model's source addon under ``work``, built once."""
    folder = work / model
    if not (folder / "addon.yaml").is_file():
        print(f"building {model} into {folder} ...", flush=True)
        BUILDERS[model](folder)
    return folder


def first_audio(voice, block: AutoregressiveDecoder, text: str) -> dict[str, float]:
    """Steps and milliseconds to the first mel chunk and the first audio chunk of ``text``, and ms per step."""
    step_times: list[float] = []
    runner = block.runner

    def timed(inputs):
        start = time.perf_counter()
        out = runner(inputs)
        step_times.append(time.perf_counter() - start)
        return out

    block.runner = timed  # read by bind_step at the start of each utterance
    try:
        start = time.perf_counter()
        first_mel: tuple[int, float] | None = None

        def mel():
            nonlocal first_mel
            for chunk in voice.stream(text):
                if first_mel is None:
                    first_mel = (len(step_times), time.perf_counter() - start)
                yield chunk

        audio = voice.vocoder.stream(mel())
        next(audio)
        audio_at = (len(step_times), time.perf_counter() - start)
        audio.close()
    finally:
        block.runner = runner
    return {"steps_to_first_mel": first_mel[0], "first_mel_ms": 1e3 * first_mel[1],
            "steps_to_first_audio": audio_at[0], "first_audio_ms": 1e3 * audio_at[1],
            "step_ms": 1e3 * statistics.median(step_times)}


def decoding_at_least(voice: Voice, ratio: float) -> Voice:
    """The voice with every AutoregressiveDecoder's stop token ignored before ``ratio`` frames per text step."""
    data = voice.spec.to_dict()

    def set_ratio(entry) -> None:
        if isinstance(entry, list):
            for value in entry:
                set_ratio(value)
        elif isinstance(entry, dict):
            if entry.get("type") == "AutoregressiveDecoder":
                entry["min_length_ratio"] = ratio
            for value in entry.values():
                set_ratio(value)

    set_ratio(data["stack"])
    variants = BACKENDS.get(voice.backend).block_variants
    return Voice(parse_spec(data), voice.runners, variants, voice.options, voice.backend)


def measure(addon: Path, backend: str, runs: int) -> list[dict]:
    """One row per text: the median over ``runs`` of each :func:`first_audio` number."""
    voice = decoding_at_least(ttsstack.load(addon, backend=backend), 2.0)
    block = next(b for _, b in voice.tree() if isinstance(b, AutoregressiveDecoder))
    rows = []
    for text in TEXTS:
        samples = [first_audio(voice, block, text) for _ in range(runs)]
        rows.append({"text": text, **{key: statistics.median(s[key] for s in samples) for key in samples[0]}})
    return rows


def main() -> None:
    """Build, compile, measure, print a table and write ``ar_first_audio.json``."""
    parser = parser_for(__doc__)
    parser.add_argument("--model", action=ListFlag, default=["tacotron2"],
                        help=f"full-size model to build and measure, of {', '.join(BUILDERS)} (repeatable or comma list)")
    parser.add_argument("--backend", action=ListFlag, default=["cpu", "onnx"],
                        help="backend to compile for and measure (repeatable or comma list)")
    parser.add_argument("--runs", type=int, default=3, help="runs per text; the median is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads")
    parser.add_argument("--addon", type=Path, default=None, metavar="DIR",
                        help="measure this autoregressive addon instead of building the --model ones (default: none)")
    parser.add_argument("--work", type=Path, default=HERE / "out" / "ar_first_audio",
                        help="folder for the built addons (reused when present)")
    add_output_flags(parser)
    args = parser.parse_args()
    unknown = [m for m in args.model if m not in BUILDERS]
    if unknown:
        parser.error(f"--model: unknown {', '.join(unknown)}; known: {', '.join(BUILDERS)}")
    out = output_dir(parser, args)
    torch.set_num_threads(args.threads)
    results = []
    print(f"{'model':10s} {'backend':8s} {'steps->mel':>10s} {'steps->audio':>12s} {'mel ms':>8s} {'audio ms':>9s} {'ms/step':>8s}")
    addons = {args.addon.name: args.addon} if args.addon else {m: addon_folder(m, args.work) for m in args.model}
    for model, addon in addons.items():
        for backend in args.backend:
            for row in measure(addon, backend, args.runs):
                results.append({"model": model, "backend": backend, **row})
                print(f"{model:10s} {backend:8s} {row['steps_to_first_mel']:10.0f} {row['steps_to_first_audio']:12.0f} "
                      f"{row['first_mel_ms']:8.1f} {row['first_audio_ms']:9.1f} {row['step_ms']:8.2f}", flush=True)
    record = {"host": {"machine": platform.machine(), "processor": platform.processor(), "threads": args.threads,
                       "torch": torch.__version__, "ttsstack": str(Path(ttsstack.__file__).parent)},
              "runs": args.runs, "results": results}
    path = out / "ar_first_audio.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
