"""Train the demo voice's neural vocoder (``../vocoder.py``) on espeak-ng's own audio.

Copy-synthesis training: the input is the log-mel of espeak-ng's audio (as
``make_dataset.py`` stores it, so exactly what the acoustic model learns to
produce), the target that audio. Each step takes random segments of
``--segment`` frames (``hop`` samples each) from random training utterances.
No adversarial loss (too slow on two cores): a multi-resolution STFT loss
(spectral convergence + log-magnitude L1 at 512/1024/2048-point FFTs) plus the
L1 distance of full-band log-mels (80 bins to Nyquist), as Vocos and
Parallel WaveGAN use. Seeded, one thread, stopped at ``--steps`` or
``--minutes``, whichever comes first: the learning rate's cosine decay
follows whichever runs out sooner, so a time-boxed run on a busy machine
still anneals; the weights are written at every evaluation.

Needs a dataset made with ``make_dataset.py --audio``. Usage::

    python addons/fastpitch-demo/training/train_vocoder.py out/fastpitch-demo-data --steps 3600 --minutes 55
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (ADDON, AUDIO, audio_module, learning_rate, progress, save_weights,  # noqa: E402
                    seed_everything, smooth, training_parser, update, vocoder_module)

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
"""(n_fft, hop) of the multi-resolution STFT loss."""
LOG_FLOOR = 1e-5
"""Magnitudes are clamped here before logs (the addon's log-mel clamp)."""


class Utterances:
    """One split's mels and espeak-ng audio (float in [-1, 1], zero-padded to ``frames * hop`` samples)."""

    def __init__(self, data: Path, split: str, hop: int):
        with np.load(data / f"{split}.npz") as mels, np.load(data / f"audio_{split}.npz") as audio:
            all_mels, mel_lengths = torch.from_numpy(mels["mels"]), mels["mel_lengths"]
            samples, audio_lengths = audio["audio"], audio["audio_lengths"]
        mel_edges = np.concatenate([[0], np.cumsum(mel_lengths)])
        audio_edges = np.concatenate([[0], np.cumsum(audio_lengths)])
        self.mels, self.audio = [], []
        for (m0, m1), (a0, a1) in zip(zip(mel_edges[:-1], mel_edges[1:]), zip(audio_edges[:-1], audio_edges[1:])):
            frames = int(m1 - m0)
            if frames != 1 + (a1 - a0) // hop:
                raise SystemExit(f"{data}: utterance {len(self.mels)} of {split} has {frames} frames for "
                                 f"{a1 - a0} samples; remake the dataset with --audio")
            wave = np.zeros(frames * hop, dtype=np.float32)
            wave[: a1 - a0] = samples[a0:a1] / 32768.0
            self.mels.append(all_mels[m0:m1])
            self.audio.append(torch.from_numpy(wave))
        self.hop = hop

    def segments(self, rng: random.Random, count: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` random segments: mels ``[count, frames, n_mels]`` and their audio ``[count, frames * hop]``."""
        mels, audio = [], []
        while len(mels) < count:
            i = rng.randrange(len(self.mels))
            total = len(self.mels[i])
            if total < frames:
                continue
            start = rng.randrange(total - frames + 1)
            mels.append(self.mels[i][start : start + frames])
            audio.append(self.audio[i][start * self.hop : (start + frames) * self.hop])
        return torch.stack(mels), torch.stack(audio)


class SpectralLoss(torch.nn.Module):
    """Multi-resolution STFT loss (spectral convergence + log-magnitude L1) and full-band log-mel L1."""

    def __init__(self, mel_filters: torch.Tensor):
        super().__init__()
        self.register_buffer("mel_filters", mel_filters)
        for n_fft, _ in RESOLUTIONS:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft))

    def magnitude(self, audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        """``|STFT|`` ``[B, n_fft // 2 + 1, frames]`` (centred, reflect padding)."""
        window = getattr(self, f"window_{n_fft}")
        return torch.stft(audio, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True).abs()

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of ``output`` against ``target`` audio ``[B, samples]``."""
        terms = {"convergence": 0.0, "log_magnitude": 0.0}
        for n_fft, hop in RESOLUTIONS:
            out, ref = self.magnitude(output, n_fft, hop), self.magnitude(target, n_fft, hop)
            terms["convergence"] += torch.linalg.norm(ref - out) / torch.linalg.norm(ref).clamp(min=LOG_FLOOR)
            terms["log_magnitude"] += (out.clamp(min=LOG_FLOOR).log() - ref.clamp(min=LOG_FLOOR).log()).abs().mean()
            if n_fft == AUDIO["n_fft"]:
                mel_out = (self.mel_filters @ out).clamp(min=LOG_FLOOR).log()
                mel_ref = (self.mel_filters @ ref).clamp(min=LOG_FLOOR).log()
                terms["mel_l1"] = (mel_out - mel_ref).abs().mean()
        terms["convergence"] /= len(RESOLUTIONS)
        terms["log_magnitude"] /= len(RESOLUTIONS)
        return terms


def full_band_filters() -> torch.Tensor:
    """The addon's mel filterbank stretched to Nyquist: the loss also sees what ``fmax`` leaves out."""
    lib = audio_module()
    settings = lib.MelSettings(**{**AUDIO, "fmax": AUDIO["sample_rate"] / 2})
    return lib.mel_filterbank(settings)


def heldout_loss(model: torch.nn.Module, loss: SpectralLoss, heldout: Utterances, count: int) -> dict[str, float]:
    """Mean loss terms over the first ``count`` held-out utterances, vocoded whole."""
    totals: dict[str, float] = {}
    with torch.no_grad():
        for mel, audio in list(zip(heldout.mels, heldout.audio))[:count]:
            out = model(mel.unsqueeze(0), torch.ones(1, len(mel)))
            for k, v in loss(out, audio.unsqueeze(0)).items():
                totals[k] = totals.get(k, 0.0) + float(v) / count
    return totals


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, train on random segments, evaluate and save the weights periodically."""
    parser = training_parser(__doc__, data="folder written by make_dataset.py --audio",
                             out=ADDON / "vocoder.safetensors", out_help="weights file written",
                             steps=3600, lr=1e-3, warmup=200, eval_every=500)
    parser.add_argument("--minutes", type=float, default=55.0, help="stop after this much wall time")
    parser.add_argument("--batch", type=int, default=16, help="segments per step")
    parser.add_argument("--segment", type=int, default=32, help="frames per segment")
    parser.add_argument("--eval-utterances", type=int, default=20, help="held-out utterances per evaluation")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    rng = random.Random(args.seed)
    train = Utterances(args.data, "train", AUDIO["hop_length"])
    heldout = Utterances(args.data, "heldout", AUDIO["hop_length"])
    model = vocoder_module().VocosDemo(n_mels=AUDIO["n_mels"], n_fft=AUDIO["n_fft"], hop=AUDIO["hop_length"])
    loss_fn = SpectralLoss(full_band_filters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99))

    log_path = args.data / "vocoder_log.csv"
    start, step, running, last = time.time(), 0, {}, {}
    columns = ["step", "seconds", "lr", "convergence", "log_magnitude", "mel_l1",
               "val_convergence", "val_log_magnitude", "val_mel_l1"]
    with progress(log_path, columns, args.steps, "vocoder") as (write, bar):
        while step < args.steps and time.time() - start < args.minutes * 60:
            # the cosine decay follows the steps or the minutes, whichever runs out sooner
            lr = learning_rate(step, args, floor=0.02, time_spent=(time.time() - start) / (args.minutes * 60))
            mel, audio = train.segments(rng, args.batch, args.segment)
            terms = loss_fn(model(mel, torch.ones(mel.shape[:2])), audio)
            update(model, optimizer, terms["convergence"] + terms["log_magnitude"] + terms["mel_l1"], lr)
            step += 1
            smooth(running, terms, 0.98)
            bar.update(1)
            bar.set_postfix(mel=f"{running['mel_l1']:.3f}", sc=f"{running['convergence']:.3f}")
            done = step >= args.steps or time.time() - start >= args.minutes * 60
            if step % args.eval_every == 0 or done:
                last = heldout_loss(model, loss_fn, heldout, args.eval_utterances)
                write([step, round(time.time() - start, 1), f"{optimizer.param_groups[0]['lr']:.2e}"]
                      + [f"{running[k]:.4f}" for k in ("convergence", "log_magnitude", "mel_l1")]
                      + [f"{last[k]:.4f}" for k in ("convergence", "log_magnitude", "mel_l1")])
                tqdm.write(f"step {step:6d} {time.time() - start:6.0f}s train mel_l1 {running['mel_l1']:.3f} "
                           f"sc {running['convergence']:.3f}  heldout mel_l1 {last['mel_l1']:.3f} "
                           f"sc {last['convergence']:.3f} logmag {last['log_magnitude']:.3f}")
                metadata = {"format": "1", "config": json.dumps(model.config), "steps": str(step),
                            "seed": str(args.seed), "batch": str(args.batch), "segment": str(args.segment),
                            "train_seconds": str(round(time.time() - start)),
                            "heldout": json.dumps({k: round(v, 4) for k, v in last.items()})}
                save_weights(model, args.out, metadata)
    print(json.dumps({"steps": step, "seconds": round(time.time() - start), "heldout": last,
                      "weights": str(args.out), "log": str(log_path)}, indent=1))


if __name__ == "__main__":
    main()
