"""Train the demo voice (``addons/fastpitch-demo/model.py``) on a set from make_dataset.py.

Teacher forcing: the decoder reads the text encoder's vectors repeated by the
reference durations (espeak-ng's own phoneme timings), and learns the log-mel by
L1; the duration encoder learns the durations by MSE on ``log(1 + frames)``.
CPU, one thread, seeded; batches hold utterances of similar length.

Writes, next to model.py (``--out``):

- ``weights.safetensors``: the ``FastPitchDemo`` state dict (float32), with the
  training settings and final losses in its metadata;
- ``symbols.json``: the phoneme symbol table the weights were trained with.

The loss curve goes to ``train_log.csv`` in the data folder.

Usage::

    python addons/fastpitch-demo/training/train.py out/fastpitch-demo-data --steps 4000
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Iterator

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ADDON, Split, model_module  # noqa: E402


@contextlib.contextmanager
def frames_per_symbol(module: ModuleType, low: float | None, high: float | None) -> Iterator[tuple[float, float]]:
    """Temporarily override model.py's duration range (restored on exit)."""
    saved = module.MIN_FRAMES_PER_SYMBOL, module.MAX_FRAMES_PER_SYMBOL
    if low is not None:
        module.MIN_FRAMES_PER_SYMBOL, module.MAX_FRAMES_PER_SYMBOL = float(low), float(high)
    try:
        yield module.MIN_FRAMES_PER_SYMBOL, module.MAX_FRAMES_PER_SYMBOL
    finally:
        module.MIN_FRAMES_PER_SYMBOL, module.MAX_FRAMES_PER_SYMBOL = saved


def losses(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Teacher-forced mel L1, duration MSE on log(1 + frames), and duration MAE in frames."""
    encoded = model.text_encoder(batch["tokens"])
    predicted = model.duration_encoder(encoded)
    frames = torch.zeros(encoded.shape[0], batch["mel"].shape[1], encoded.shape[2])
    for row in range(encoded.shape[0]):
        upsampled = torch.repeat_interleave(encoded[row], batch["durations"][row], dim=0)
        frames[row, : upsampled.shape[0]] = upsampled
    mel = model.decoder(frames)
    mel_mask, token_mask = batch["mel_mask"].unsqueeze(-1), batch["token_mask"]
    mel_l1 = ((mel - batch["mel"]).abs() * mel_mask).sum() / (mel_mask.sum() * mel.shape[-1])
    target = batch["durations"].float()
    dur_mse = (((torch.log1p(predicted) - torch.log1p(target)) ** 2) * token_mask).sum() / token_mask.sum()
    dur_mae = (((predicted.round() - target).abs()) * token_mask).sum() / token_mask.sum()
    return {"mel_l1": mel_l1, "dur_mse": dur_mse, "dur_mae": dur_mae.detach()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, max_frames: int) -> dict[str, float]:
    model.eval()
    sums, weight = {}, 0
    for ids in split.batches(max_frames, None):
        out = losses(model, split.collate(ids))
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(ids)
        weight += len(ids)
    model.train()
    return {k: v / weight for k, v in sums.items()}


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder written by make_dataset.py")
    parser.add_argument("--out", type=Path, default=ADDON, help="where weights.safetensors and symbols.json go")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--max-frames", type=int, default=4000, help="padded frames per batch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--dur-weight", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--frames-per-symbol", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="override model.py's MIN/MAX_FRAMES_PER_SYMBOL for this run")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    module = model_module()
    table = json.loads((args.data / "symbols.json").read_text(encoding="utf-8"))
    info = json.loads((args.data / "info.json").read_text(encoding="utf-8"))
    train, heldout = Split(args.data / "train.npz"), Split(args.data / "heldout.npz")
    n_mels = train.mels[0].shape[1]
    low, high = args.frames_per_symbol or (None, None)

    with frames_per_symbol(module, low, high) as duration_range:
        model = module.FastPitchDemo(len(table["symbols"]), n_mels=n_mels)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)

        def lr_at(step: int) -> float:
            if step < args.warmup:
                return args.lr * (step + 1) / args.warmup
            progress = (step - args.warmup) / max(1, args.steps - args.warmup)
            return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

        args.out.mkdir(parents=True, exist_ok=True)
        weights_path = args.out / "weights.safetensors"
        log_path = args.data / "train_log.csv"
        rng = random.Random(args.seed)
        start = time.time()
        step, epoch, last_val = 0, 0, {}
        running: dict[str, float] = {}
        with open(log_path, "w", newline="") as log_file, tqdm(total=args.steps, desc="train", unit="step") as bar:
            log = csv.writer(log_file)
            log.writerow(["step", "epoch", "seconds", "lr", "mel_l1", "dur_mse", "dur_mae",
                          "val_mel_l1", "val_dur_mse", "val_dur_mae"])
            while step < args.steps:
                epoch += 1
                for ids in train.batches(args.max_frames, rng):
                    if step >= args.steps:
                        break
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at(step)
                    out = losses(model, train.collate(ids))
                    loss = out["mel_l1"] + args.dur_weight * out["dur_mse"]
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    step += 1
                    for k, v in out.items():
                        running[k] = 0.98 * running.get(k, float(v.detach())) + 0.02 * float(v.detach())
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, mel=f"{running['mel_l1']:.3f}", dur=f"{running['dur_mse']:.3f}")
                    if step % args.eval_every == 0 or step == args.steps:
                        last_val = evaluate(model, heldout, args.max_frames)
                        log.writerow([step, epoch, round(time.time() - start, 1), f"{lr_at(step - 1):.2e}"]
                                     + [f"{running[k]:.4f}" for k in ("mel_l1", "dur_mse", "dur_mae")]
                                     + [f"{last_val[k]:.4f}" for k in ("mel_l1", "dur_mse", "dur_mae")])
                        log_file.flush()
                        tqdm.write(f"step {step:5d} epoch {epoch:3d} {time.time() - start:7.0f}s  "
                                   f"train mel_l1 {running['mel_l1']:.3f} dur_mse {running['dur_mse']:.4f}  "
                                   f"heldout mel_l1 {last_val['mel_l1']:.3f} dur_mse {last_val['dur_mse']:.4f} "
                                   f"dur_mae {last_val['dur_mae']:.2f} frames")
                        metadata = {
                            "format": "1",
                            "n_symbols": str(len(table["symbols"])),
                            "n_mels": str(n_mels),
                            "frames_per_symbol": json.dumps(list(duration_range)),
                            "steps": str(step),
                            "seed": str(args.seed),
                            "train_seconds": str(round(time.time() - start)),
                            "espeak": json.dumps(table.get("espeak", {})),
                            "sentences": str(info.get("source", "")),
                            "heldout": json.dumps({k: round(v, 4) for k, v in last_val.items()}),
                        }
                        save_weights(model, weights_path, metadata)
        shutil.copyfile(args.data / "symbols.json", args.out / "symbols.json")
        print(json.dumps({"steps": step, "epochs": epoch, "seconds": round(time.time() - start),
                          "frames_per_symbol": duration_range, "heldout": last_val,
                          "weights": str(weights_path), "log": str(log_path)}, indent=1))


if __name__ == "__main__":
    main()
