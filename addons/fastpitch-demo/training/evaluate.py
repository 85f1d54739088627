"""Score the trained demo voice against espeak-ng on the held-out sentences.

For each held-out utterance of a make_dataset.py folder, the model runs as at
synthesis time (one utterance, no padding) and is compared with espeak-ng's own
rendering:

- **duration error**: mean absolute difference, in frames per phoneme, between
  the rounded predicted durations and espeak-ng's; and the relative error of the
  utterance length;
- **MCD, reference durations**: mel-cepstral distortion of the decoder's mel when
  it is given espeak-ng's durations (frame-aligned; the decoder's quality);
- **MCD, predicted durations**: MCD of the mel synthesized end to end from the
  predicted durations, aligned to the reference by DTW (the whole voice).

Mel cepstra come from the natural-log mel spectra by a DCT-II scaled as SPTK's
mel-cepstrum (``ln|H| = c_0 + sum_k c_k cos(k w)``),
``c_k = (2/N) * sum_n logmel_n * cos(pi * k * (2n + 1) / (2N))``;
MCD = ``(10 / ln 10) * sqrt(2 * sum_{k=1..K} (c_k - c'_k)^2)`` dB per frame
(K = 24; c_0, the energy, left out), averaged over frames.

Prints a table, writes ``evaluation.json`` and a PNG of reference vs predicted
mel for one sentence. With ``--say TEXT --wav PATH`` it also speaks any text
(phonemized by espeak-ng, vocoded by Griffin-Lim), for listening.

Usage::

    python addons/fastpitch-demo/training/evaluate.py out/fastpitch-demo-data --png docs/fastpitch-demo-mel.png
    python addons/fastpitch-demo/training/evaluate.py out/fastpitch-demo-data --say "Hello there." --wav /tmp/hello.wav
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ADDON, AUDIO, Split, audio_module, model_module, phonemes_module  # noqa: E402
from metrics import mcd_dtw, mcd_frames, mel_cepstrum, plot, summarize  # noqa: E402
from train import frames_per_symbol  # noqa: E402


@torch.no_grad()
def synthesize(model, tokens: torch.Tensor, durations: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel ``[T, n_mels]``, rounded predicted durations) for one utterance, as at runtime."""
    encoded = model.text_encoder(tokens[None])
    predicted = model.duration_encoder(encoded)[0].round().clamp(min=0).long()
    repeats = predicted if durations is None else durations
    frames = torch.repeat_interleave(encoded, repeats, dim=1)
    return model.decoder(frames)[0].numpy(), predicted.numpy()


def say(model, text: str, symbols: list[str], path: Path) -> None:
    """Speak ``text`` with the model and Griffin-Lim into a WAV file."""
    audio, espeak = audio_module(), phonemes_module()
    ids = {s: i for i, s in enumerate(symbols)}
    phonemes = espeak.phonemize(text)
    unknown = sorted({p for p in phonemes if p not in ids})
    if unknown:
        print(f"note: dropping phonemes not in the symbol table: {unknown}")
    tokens = torch.tensor([ids[p] for p in phonemes if p in ids])
    mel, _ = synthesize(model, tokens, None)
    wave = audio.GriffinLim(audio.MelSettings(**AUDIO)).vocode(mel)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio.write_wav(path, wave, AUDIO["sample_rate"])
    print(f"{text!r}: {len(phonemes)} phonemes, {mel.shape[0]} frames, {len(wave) / AUDIO['sample_rate']:.2f} s -> {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder written by make_dataset.py")
    parser.add_argument("--weights", type=Path, default=ADDON / "weights.safetensors")
    parser.add_argument("--png", type=Path, help="PNG path (default: DATA/evaluation_mel.png)")
    parser.add_argument("--sentence", type=int, default=0, help="held-out index shown in the PNG")
    parser.add_argument("--order", type=int, default=24, help="cepstral order K of the MCD")
    parser.add_argument("--say", help="also speak this text (needs --wav)")
    parser.add_argument("--wav", type=Path, help="WAV path for --say")
    args = parser.parse_args(argv)
    if bool(args.say) != bool(args.wav):
        parser.error("--say and --wav go together")

    torch.set_num_threads(1)
    module = model_module()
    with safe_open(str(args.weights), framework="pt") as f:
        meta = f.metadata() or {}
    trained_range = json.loads(meta["frames_per_symbol"]) if "frames_per_symbol" in meta else None
    code_range = [module.MIN_FRAMES_PER_SYMBOL, module.MAX_FRAMES_PER_SYMBOL]
    if trained_range and trained_range != code_range:
        print(f"note: weights trained with frames_per_symbol {trained_range}, model.py has {code_range}; "
              f"evaluating with {trained_range}")
    texts = [json.loads(line) for line in (args.data / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [t["text"] for t in texts if t["split"] == "heldout"]
    heldout = Split(args.data / "heldout.npz")
    state = load_file(str(args.weights))
    n_symbols, n_mels = state["text_encoder.embedding.weight"].shape[0], state["decoder.proj.weight"].shape[0]

    low, high = trained_range or code_range
    rows = []
    with frames_per_symbol(module, low, high):
        model = module.FastPitchDemo(n_symbols, n_mels=n_mels)
        model.load_state_dict(state)
        model.eval()
        for i in range(len(heldout)):
            tokens, reference_durations, reference = heldout.tokens[i], heldout.durations[i], heldout.mels[i].numpy()
            forced, predicted = synthesize(model, tokens, reference_durations)
            free, _ = synthesize(model, tokens, None)
            ref_c = mel_cepstrum(reference, args.order)
            rows.append({
                "dur_mae": float(np.abs(predicted - reference_durations.numpy()).mean()),
                "length_err": float(abs(predicted.sum() - reference.shape[0]) / reference.shape[0]),
                "mcd_forced": float(mcd_frames(ref_c, mel_cepstrum(forced, args.order)).mean()),
                "mcd_dtw": mcd_dtw(ref_c, mel_cepstrum(free, args.order)),
            })
            if i == args.sentence:
                panels = [("espeak-ng (reference)", reference),
                          ("model, espeak-ng durations", forced),
                          ("model, predicted durations", free)]
                plot_text = texts[i] if i < len(texts) else f"held-out #{i}"
        if args.say:
            table = json.loads((args.data / "symbols.json").read_text(encoding="utf-8"))
            say(model, args.say, table["symbols"], args.wav)

    labels = {"dur_mae": "duration error (frames/phoneme)", "length_err": "utterance length error (fraction)",
              "mcd_forced": "MCD, reference durations (dB)", "mcd_dtw": "MCD, predicted durations, DTW (dB)"}
    print(f"{len(rows)} held-out sentences, weights {args.weights}")
    summary = summarize(rows, labels)
    png = args.png or args.data / "evaluation_mel.png"
    plot(png, plot_text, panels)
    (args.data / "evaluation.json").write_text(json.dumps({"order": args.order, "sentences": len(rows),
                                                           "summary": summary, "rows": rows}, indent=1) + "\n")
    print(f"mel plot: {png}")


if __name__ == "__main__":
    main()
