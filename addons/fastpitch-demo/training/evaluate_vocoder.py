"""Score the neural vocoder against Griffin-Lim on the held-out sentences, by copy synthesis.

Each held-out utterance's log-mel (computed from espeak-ng's audio, as the
dataset stores it) is vocoded by the trained network (``../vocoder.py`` with
``vocoder.safetensors``) and by the Griffin-Lim the runtime uses by default
(``ttsstack.audio.GriffinLim`` with its default settings), and both waveforms
are compared with espeak-ng's own audio:

- **LSD** (log-spectral distance, dB): per frame of a 1024-point STFT (hop
  256, Hann), ``sqrt(mean_f (20 log10(|X_f| / |Y_f|))^2)`` with magnitudes
  floored at 1e-5 (the log-mel floor), averaged over frames; over the full band
  (0 to 11,025 Hz) and over the mel's band (0 to ``fmax`` = 8 kHz: Griffin-Lim
  has no information above it, the network learns to fill it);
- **MCD** (dB): the mel-cepstral distortion (``evaluate.py``'s) between the
  log-mel re-analysed from the vocoded audio and the input log-mel.

Prints a table, writes ``DATA/evaluation_vocoder.json``; with ``--wav DIR``
also the reference, network and Griffin-Lim audio of one sentence.

Usage::

    python addons/fastpitch-demo/training/evaluate_vocoder.py out/fastpitch-demo-data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ADDON, AUDIO, audio_module, vocoder_module  # noqa: E402
from metrics import mcd_frames, mel_cepstrum, summarize  # noqa: E402
from train_vocoder import LOG_FLOOR, Utterances  # noqa: E402


def log_magnitude(audio: np.ndarray) -> np.ndarray:
    """``log10 |STFT|`` ``[frames, n_fft // 2 + 1]`` with the addon's STFT settings, floored at 1e-5."""
    spectrum = torch.stft(torch.from_numpy(audio), AUDIO["n_fft"], AUDIO["hop_length"],
                          window=torch.hann_window(AUDIO["n_fft"]), center=True, return_complex=True)
    return spectrum.abs().clamp(min=LOG_FLOOR).log10().T.numpy()


def lsd(reference: np.ndarray, audio: np.ndarray, bins: int | None = None) -> float:
    """Log-spectral distance in dB of ``audio`` against ``reference`` (same length), over the first ``bins`` bins."""
    difference = 20.0 * (log_magnitude(audio) - log_magnitude(reference))[:, :bins]
    return float(np.sqrt((difference**2).mean(axis=1)).mean())


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, vocode every held-out mel both ways, score against espeak-ng, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder written by make_dataset.py --audio")
    parser.add_argument("--weights", type=Path, default=ADDON / "vocoder.safetensors")
    parser.add_argument("--order", type=int, default=24, help="cepstral order K of the MCD")
    parser.add_argument("--wav", type=Path, help="folder for one sentence's reference/network/Griffin-Lim WAVs")
    parser.add_argument("--sentence", type=int, default=0, help="held-out index written with --wav")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N held-out sentences")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    lib = audio_module()
    settings = lib.MelSettings(**AUDIO)
    mel_bins = int(np.floor(AUDIO["fmax"] / AUDIO["sample_rate"] * AUDIO["n_fft"])) + 1
    model, griffin_lim = vocoder_module().load_trained(args.weights), lib.GriffinLim(settings)
    heldout = Utterances(args.data, "heldout", AUDIO["hop_length"])
    rows = []
    for i, (mel, reference) in enumerate(list(zip(heldout.mels, heldout.audio))[: args.limit]):
        with torch.no_grad():
            network = model(mel.unsqueeze(0), torch.ones(1, len(mel)))[0].numpy()
        vocoded = {"network": network, "griffin_lim": griffin_lim.vocode(mel.numpy())[: len(network)]}
        reference = reference.numpy()
        ref_cepstrum = mel_cepstrum(mel.numpy(), args.order)
        row = {}
        for name, audio in vocoded.items():
            row[f"lsd_{name}"] = lsd(reference, audio)
            row[f"lsd_band_{name}"] = lsd(reference, audio, mel_bins)
            again = lib.log_mel_spectrogram(audio, settings)[: len(mel)]
            row[f"mcd_{name}"] = float(mcd_frames(ref_cepstrum, mel_cepstrum(again, args.order)).mean())
        rows.append(row)
        if args.wav and i == args.sentence:
            args.wav.mkdir(parents=True, exist_ok=True)
            for name, audio in {"espeak-ng": reference, **vocoded}.items():
                lib.write_wav(args.wav / f"heldout{i}_{name}.wav", audio, AUDIO["sample_rate"])

    labels = {}
    for name, title in (("network", "network"), ("griffin_lim", "Griffin-Lim")):
        labels |= {f"lsd_{name}": f"LSD full band, {title} (dB)", f"lsd_band_{name}": f"LSD 0-8 kHz, {title} (dB)",
                   f"mcd_{name}": f"MCD, {title} (dB)"}
    print(f"{len(rows)} held-out sentences, copy synthesis from espeak-ng's mel, weights {args.weights}")
    summary = summarize(rows, labels)
    with safe_open(str(args.weights), framework="pt") as f:
        meta = f.metadata() or {}
    report = {"order": args.order, "sentences": len(rows), "weights": {k: meta.get(k) for k in ("config", "steps", "train_seconds")},
              "summary": summary, "rows": rows}
    (args.data / "evaluation_vocoder.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
