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

import contextlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (ADDON, DataSet, model_module, seed_everything, train_on_split,  # noqa: E402
                    training_parser)


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


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, train, checkpoint at every evaluation."""
    parser = training_parser(__doc__, data="folder written by make_dataset.py", out=ADDON,
                             out_help="where weights.safetensors and symbols.json go",
                             steps=4000, lr=1e-3, warmup=300, eval_every=250)
    parser.add_argument("--max-frames", type=int, default=4000, help="padded frames per batch")
    parser.add_argument("--dur-weight", type=float, default=1.0, help="weight of the duration loss")
    parser.add_argument("--frames-per-symbol", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="override model.py's MIN/MAX_FRAMES_PER_SYMBOL for this run")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    module = model_module()
    data = DataSet.read(args.data)
    low, high = args.frames_per_symbol or (None, None)
    with frames_per_symbol(module, low, high) as duration_range:
        model = module.FastPitchDemo(data.n_symbols, n_mels=data.n_mels)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)
        summary = train_on_split(
            model, optimizer, data, args, losses=lambda batch: losses(model, batch),
            objective=lambda terms: terms["mel_l1"] + args.dur_weight * terms["dur_mse"],
            logged=("mel_l1", "dur_mse", "dur_mae"), decay=0.98, log_name="train_log.csv",
            metadata={"frames_per_symbol": json.dumps(list(duration_range))})
    print(json.dumps({**summary, "frames_per_symbol": duration_range}, indent=1))


if __name__ == "__main__":
    main()
