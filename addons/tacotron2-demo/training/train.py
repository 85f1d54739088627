"""Train the attention demo (``addons/tacotron2-demo/model.py``) on the FastPitch demo's espeak-ng data set.

Teacher forcing: each decoder step reads the last reference frame of the step
before and makes the next ``REDUCTION`` frames. Losses: mel L1 before and after
the postnet, the stop token's binary cross-entropy, and an alignment loss that
guides the attention to espeak-ng's own phoneme timings: at step ``k`` the target
is the share of the step's frames that each phoneme covers (the hard alignment
that make_dataset.py's frames per phoneme give), scored by cross-entropy. With
the alignment given, the attention learns in minutes rather than hours.
CPU, one thread, seeded; the data set and its batching are the FastPitch
demo's (``addons/fastpitch-demo/training/common.py``).

Writes, next to model.py (``--out``):

- ``weights.safetensors``: the ``Tacotron2Demo`` state dict (float32), with the
  training settings and held-out losses in its metadata (rewritten at every
  evaluation, so a stopped run leaves its last checkpoint);
- ``symbols.json``: the phoneme symbol table the weights were trained with.

The loss curve goes to ``tacotron_train_log.csv`` in the data folder.

Usage::

    python addons/tacotron2-demo/training/train.py out/fastpitch-demo-data --steps 1000
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

ADDON = Path(__file__).resolve().parents[1]
sys.path.append(str(ADDON.parent / "fastpitch-demo" / "training"))

from common import Split, load_module  # noqa: E402


def model_module() -> ModuleType:
    """``addons/tacotron2-demo/model.py``."""
    return load_module(ADDON / "model.py", "tacotron2_demo_model")


def alignment_target(durations: torch.Tensor, steps: int, reduction: int) -> torch.Tensor:
    """``[B, steps, T_text]``: the share of each step's ``reduction`` frames spent on each token.

    Frames past an utterance's end count for its last token (those steps are
    masked in the loss anyway).
    """
    rows = []
    for row in durations:
        token_of_frame = torch.repeat_interleave(torch.arange(len(row)), row)
        last = int(token_of_frame[-1])
        token_of_frame = torch.nn.functional.pad(token_of_frame, (0, steps * reduction - len(token_of_frame)), value=last)
        one_hot = torch.nn.functional.one_hot(token_of_frame, len(row)).float()
        rows.append(one_hot.view(steps, reduction, len(row)).mean(1))
    return torch.stack(rows)


def teacher_forced(model: torch.nn.Module, batch: dict[str, torch.Tensor], reduction: int) -> dict[str, torch.Tensor]:
    """Run the encoder, ``ceil(T / reduction)`` decoder steps on the reference frames, and the postnet."""
    tokens, mel = batch["tokens"], batch["mel"]
    size, n_mels = tokens.shape[0], mel.shape[-1]
    steps = math.ceil(mel.shape[1] / reduction)
    text_mask = batch["token_mask"].bool()
    memory, processed = model.encoder(tokens, text_mask.sum(1), text_mask)
    mel = torch.nn.functional.pad(mel, (0, 0, 0, steps * reduction - mel.shape[1]))
    previous = torch.cat([mel.new_zeros(size, 1, n_mels), mel[:, reduction - 1 :: reduction][:, :-1]], dim=1)
    state = {name: memory.new_zeros(size, dim) for name, dim in (
        ("attention_hidden", model.decoder_step.attention_rnn.hidden_size),
        ("attention_cell", model.decoder_step.attention_rnn.hidden_size),
        ("decoder_hidden", model.decoder_step.decoder_rnn.hidden_size),
        ("decoder_cell", model.decoder_step.decoder_rnn.hidden_size))}
    weights = memory.new_zeros(size, tokens.shape[1])
    weights_cum, context = weights, memory.new_zeros(size, memory.shape[2])
    frames, stops, alignment = [], [], []
    for k in range(steps):
        (frame, stop, state["attention_hidden"], state["attention_cell"], state["decoder_hidden"],
         state["decoder_cell"], weights, weights_cum, context) = model.decoder_step(
            previous[:, k : k + 1], state["attention_hidden"], state["attention_cell"], state["decoder_hidden"],
            state["decoder_cell"], weights, weights_cum, context, memory, processed, text_mask)
        frames.append(frame)
        stops.append(stop)
        alignment.append(weights)
    frames = torch.cat(frames, dim=1)
    frames_mask = torch.nn.functional.pad(batch["mel_mask"], (0, frames.shape[1] - batch["mel_mask"].shape[1]))
    return {"frames": frames, "mel": model.postnet(frames, frames_mask), "stop": torch.cat(stops, dim=1),
            "alignment": torch.stack(alignment, dim=1), "target_mel": mel, "frames_mask": frames_mask}


def losses(model: torch.nn.Module, batch: dict[str, torch.Tensor], reduction: int) -> dict[str, torch.Tensor]:
    """Mel L1 (decoder and postnet), stop BCE, alignment cross-entropy, and the attention's hit rate."""
    out = teacher_forced(model, batch, reduction)
    lengths = batch["mel_mask"].sum(1).long()
    steps = out["stop"].shape[1]
    step_index = torch.arange(steps)[None, :]
    last_step = (lengths - 1) // reduction
    step_mask = (step_index <= last_step[:, None]).float()
    mask = out["frames_mask"].unsqueeze(-1)
    norm = mask.sum() * out["mel"].shape[-1]
    mel_l1 = ((out["frames"] - out["target_mel"]).abs() * mask).sum() / norm
    post_l1 = ((out["mel"] - out["target_mel"]).abs() * mask).sum() / norm
    stop_target = (step_index == last_step[:, None]).float()
    stop_bce = (torch.nn.functional.binary_cross_entropy_with_logits(
        out["stop"], stop_target, pos_weight=torch.tensor(8.0), reduction="none") * step_mask).sum() / step_mask.sum()
    target = alignment_target(batch["durations"], steps, reduction)
    align_ce = (-(target * torch.log(out["alignment"] + 1e-6)).sum(-1) * step_mask).sum() / step_mask.sum()
    hit = ((out["alignment"].argmax(-1) == target.argmax(-1)).float() * step_mask).sum() / step_mask.sum()
    return {"mel_l1": mel_l1, "post_l1": post_l1, "stop_bce": stop_bce, "align_ce": align_ce, "align_hit": hit.detach()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, max_frames: int, reduction: int) -> dict[str, float]:
    """Teacher-forced losses on a split, averaged over utterances."""
    model.eval()
    sums, weight = {}, 0
    for ids in split.batches(max_frames, None):
        out = losses(model, split.collate(ids), reduction)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(ids)
        weight += len(ids)
    model.train()
    return {k: v / weight for k, v in sums.items()}


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write the state dict atomically (a run stopped mid-write leaves the previous checkpoint)."""
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(path)


LOGGED = ("mel_l1", "post_l1", "stop_bce", "align_ce", "align_hit")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, train, checkpoint at every evaluation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder written by addons/fastpitch-demo/training/make_dataset.py")
    parser.add_argument("--out", type=Path, default=ADDON, help="where weights.safetensors and symbols.json go")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--max-frames", type=int, default=4000, help="padded frames per batch")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--align-weight", type=float, default=1.0, help="weight of the alignment loss")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    module = model_module()
    reduction = module.REDUCTION
    table = json.loads((args.data / "symbols.json").read_text(encoding="utf-8"))
    info = json.loads((args.data / "info.json").read_text(encoding="utf-8"))
    train, heldout = Split(args.data / "train.npz"), Split(args.data / "heldout.npz")
    n_mels = train.mels[0].shape[1]
    model = module.Tacotron2Demo(len(table["symbols"]), n_mels=n_mels)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=1e-6)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    args.out.mkdir(parents=True, exist_ok=True)
    weights_path = args.out / "weights.safetensors"
    log_path = args.data / "tacotron_train_log.csv"
    rng = random.Random(args.seed)
    start = time.time()
    step, epoch, last_val = 0, 0, {}
    running: dict[str, float] = {}
    with open(log_path, "w", newline="") as log_file, tqdm(total=args.steps, desc="train", unit="step") as bar:
        log = csv.writer(log_file)
        log.writerow(["step", "epoch", "seconds", "lr"] + list(LOGGED) + [f"val_{k}" for k in LOGGED])
        while step < args.steps:
            epoch += 1
            for ids in train.batches(args.max_frames, rng):
                if step >= args.steps:
                    break
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                out = losses(model, train.collate(ids), reduction)
                loss = out["mel_l1"] + out["post_l1"] + out["stop_bce"] + args.align_weight * out["align_ce"]
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                step += 1
                for k, v in out.items():
                    running[k] = 0.95 * running.get(k, float(v.detach())) + 0.05 * float(v.detach())
                bar.update(1)
                bar.set_postfix(epoch=epoch, mel=f"{running['post_l1']:.3f}", hit=f"{running['align_hit']:.2f}")
                if step % args.eval_every == 0 or step == args.steps:
                    last_val = evaluate(model, heldout, args.max_frames, reduction)
                    seconds = round(time.time() - start, 1)
                    log.writerow([step, epoch, seconds, f"{lr_at(step - 1):.2e}"]
                                 + [f"{running[k]:.4f}" for k in LOGGED] + [f"{last_val[k]:.4f}" for k in LOGGED])
                    log_file.flush()
                    tqdm.write(f"step {step:5d} epoch {epoch:3d} {seconds:7.0f}s  "
                               + " ".join(f"{k} {running[k]:.3f}" for k in LOGGED) + "  heldout "
                               + " ".join(f"{k} {last_val[k]:.3f}" for k in LOGGED))
                    metadata = {
                        "format": "1",
                        "n_symbols": str(len(table["symbols"])),
                        "n_mels": str(n_mels),
                        "reduction": str(reduction),
                        "steps": str(step),
                        "seed": str(args.seed),
                        "settings": json.dumps({k: v for k, v in vars(args).items() if k not in ("data", "out")}),
                        "train_seconds": str(round(time.time() - start)),
                        "espeak": json.dumps(table.get("espeak", {})),
                        "sentences": str(info.get("source", "")),
                        "heldout": json.dumps({k: round(v, 4) for k, v in last_val.items()}),
                    }
                    save_weights(model, weights_path, metadata)
    shutil.copyfile(args.data / "symbols.json", args.out / "symbols.json")
    print(json.dumps({"steps": step, "epochs": epoch, "seconds": round(time.time() - start),
                      "heldout": last_val, "weights": str(weights_path), "log": str(log_path)}, indent=1))


if __name__ == "__main__":
    main()
