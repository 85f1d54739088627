"""Score the trained attention demo against espeak-ng on the held-out sentences.

For each held-out utterance of the data set, the model decodes as at synthesis
time (one utterance, eval mode, each step fed its own last frame, until the stop
token fires) and is compared with espeak-ng's own rendering:

- **duration error**: frames per phoneme read off the attention (each frame
  counts for the phoneme its step attends to most) against espeak-ng's phoneme
  timings, mean absolute difference; and the relative error of the utterance
  length (where the stop token fired);
- **attention reaches the end**: the share of utterances whose last step
  attends to one of the last three phonemes and that stop before the cap;
- **MCD, teacher-forced**: mel-cepstral distortion of the mel made from the
  reference frames (frame-aligned; the decoder's quality);
- **MCD, free-running, DTW**: MCD of the synthesized mel, aligned to the
  reference by DTW (the whole voice).

The MCD and the plot are the FastPitch demo's
(``addons/fastpitch-demo/training/metrics.py``). Prints a table, writes
``tacotron_evaluation.json`` to the data folder and a PNG of reference vs
predicted mel for one sentence.

Usage::

    python addons/tacotron2-demo/training/evaluate.py out/fastpitch-demo-data --png docs/tacotron2-demo-mel.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import ADDON, Split, model_module, teacher_forced  # noqa: E402

from metrics import mcd_dtw, mcd_frames, mel_cepstrum, plot, summarize  # noqa: E402  (the FastPitch demo's, on sys.path via train)


@torch.no_grad()
def free_running(model, tokens: torch.Tensor, max_steps: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(mel ``[T, n_mels]``, attention ``[steps, T_text]``, stopped) of one utterance decoded as at synthesis."""
    step = model.decoder_step
    mask = torch.ones(1, len(tokens), dtype=torch.bool)
    memory, processed = model.encoder(tokens[None], torch.tensor([len(tokens)]), mask)
    frame = torch.zeros(1, 1, step.n_mels)
    hidden = [torch.zeros(1, step.attention_rnn.hidden_size)] * 2 + [torch.zeros(1, step.decoder_rnn.hidden_size)] * 2
    weights = weights_cum = torch.zeros(1, len(tokens))
    context = torch.zeros(1, memory.shape[2])
    frames, alignment, stopped = [], [], False
    for _ in range(max_steps):
        frame, stop, *hidden, weights, weights_cum, context = step(
            frame, *hidden, weights, weights_cum, context, memory, processed, mask)
        frames.append(frame)
        alignment.append(weights[0])
        if torch.sigmoid(stop).item() > 0.5:
            stopped = True
            break
    frames = torch.cat(frames, dim=1)
    mel = model.postnet(frames, torch.ones(1, frames.shape[1]))[0]
    return mel.numpy(), torch.stack(alignment).numpy(), stopped


def attention_durations(alignment: np.ndarray, n_tokens: int, reduction: int) -> np.ndarray:
    """Frames per token: each step's ``reduction`` frames go to the token it attends to most."""
    return np.bincount(alignment.argmax(1), minlength=n_tokens) * reduction


def main(argv: list[str] | None = None) -> None:
    """Decode every held-out sentence, print the table, write the JSON and the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder written by addons/fastpitch-demo/training/make_dataset.py")
    parser.add_argument("--weights", type=Path, default=ADDON / "weights.safetensors", help="trained state dict")
    parser.add_argument("--png", type=Path, help="PNG path (default: DATA/tacotron_evaluation_mel.png)")
    parser.add_argument("--sentence", type=int, default=0, help="held-out index shown in the PNG")
    parser.add_argument("--order", type=int, default=24, help="cepstral order K of the MCD")
    parser.add_argument("--max-steps", type=int, default=500, help="decoder step cap (the addon's is 1500)")
    parser.add_argument("--limit", type=int, help="only the first N held-out sentences")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    module = model_module()
    texts = [json.loads(line) for line in (args.data / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [t["text"] for t in texts if t["split"] == "heldout"]
    heldout = Split(args.data / "heldout.npz")
    state = load_file(str(args.weights))
    model = module.Tacotron2Demo(state["encoder.embedding.weight"].shape[0], n_mels=heldout.mels[0].shape[1])
    model.load_state_dict(state)
    model.eval()
    reduction = module.REDUCTION

    rows = []
    for i in range(min(len(heldout), args.limit or len(heldout))):
        tokens, durations, reference = heldout.tokens[i], heldout.durations[i].numpy(), heldout.mels[i].numpy()
        batch = heldout.collate([i])
        with torch.no_grad():
            forced = teacher_forced(model, batch, reduction)["mel"][0, : len(reference)].numpy()
        free, alignment, stopped = free_running(model, tokens, args.max_steps)
        predicted = attention_durations(alignment, len(tokens), reduction)
        ref_c = mel_cepstrum(reference, args.order)
        rows.append({
            "dur_mae": float(np.abs(predicted - durations).mean()),
            "length_err": float(abs(len(free) - len(reference)) / len(reference)),
            "reached_end": float(stopped and alignment[-1].argmax() >= len(tokens) - 3),
            "mcd_forced": float(mcd_frames(ref_c, mel_cepstrum(forced, args.order)).mean()),
            "mcd_dtw": mcd_dtw(ref_c, mel_cepstrum(free, args.order)),
        })
        if i == args.sentence:
            panels = [("espeak-ng (reference)", reference), ("model, teacher-forced", forced),
                      ("model, free-running (as synthesized)", free)]
            plot_text = texts[i]

    labels = {"dur_mae": "duration error (frames/phoneme)", "length_err": "utterance length error (fraction)",
              "reached_end": "attention reaches the end (share)", "mcd_forced": "MCD, teacher-forced (dB)",
              "mcd_dtw": "MCD, free-running, DTW (dB)"}
    print(f"{len(rows)} held-out sentences, weights {args.weights}")
    summary = summarize(rows, labels)
    png = args.png or args.data / "tacotron_evaluation_mel.png"
    plot(png, plot_text, panels)
    (args.data / "tacotron_evaluation.json").write_text(json.dumps(
        {"order": args.order, "sentences": len(rows), "summary": summary, "rows": rows}, indent=1) + "\n")
    print(f"mel plot: {png}")


if __name__ == "__main__":
    main()
