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

import json
import math
import sys
from pathlib import Path
from types import ModuleType

import torch

ADDON = Path(__file__).resolve().parents[1]
sys.path.append(str(ADDON.parent / "fastpitch-demo" / "training"))

from common import (DataSet, Split, load_module, seed_everything, train_on_split,  # noqa: E402
                    training_parser)


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


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, train, checkpoint at every evaluation."""
    parser = training_parser(__doc__, data="folder written by addons/fastpitch-demo/training/make_dataset.py",
                             out=ADDON, out_help="where weights.safetensors and symbols.json go",
                             steps=1000, lr=2e-3, warmup=200, eval_every=100)
    parser.add_argument("--max-frames", type=int, default=4000, help="padded frames per batch")
    parser.add_argument("--align-weight", type=float, default=1.0, help="weight of the alignment loss")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    module = model_module()
    reduction = module.REDUCTION
    data = DataSet.read(args.data)
    model = module.Tacotron2Demo(data.n_symbols, n_mels=data.n_mels)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=1e-6)
    summary = train_on_split(
        model, optimizer, data, args, losses=lambda batch: losses(model, batch, reduction),
        objective=lambda t: t["mel_l1"] + t["post_l1"] + t["stop_bce"] + args.align_weight * t["align_ce"],
        logged=("mel_l1", "post_l1", "stop_bce", "align_ce", "align_hit"), decay=0.95,
        log_name="tacotron_train_log.csv", metadata={
            "reduction": str(reduction),
            "settings": json.dumps({k: v for k, v in vars(args).items() if k not in ("data", "out")})})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
