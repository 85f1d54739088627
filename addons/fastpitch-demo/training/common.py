"""What the training scripts share: paths, audio settings, and the modules they load.

The scripts need only self-contained parts of the project: ``model.py`` and
``vocoder.py`` (the network code the addon exports), ``ttsstack/runtime/phonemes.py`` (espeak-ng)
and the ``ttsstack/audio`` package (log-mel analysis, Griffin-Lim), which
imports nothing else of ttsstack. They are loaded by path, so training does not
import the rest of the package (runtime, backends, compiler). ``Split`` reads a
make_dataset.py split; the tacotron2-demo's training reads the same data set
through it, and shares the training loop's parts below (seeding, flags, learning
rate schedule, update step, held-out means, checkpoints).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import csv
import importlib.util
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

ADDON = Path(__file__).resolve().parents[1]
REPO = ADDON.parents[1]

AUDIO = {"sample_rate": 22050, "n_fft": 1024, "hop_length": 256, "win_length": 1024,
         "n_mels": 80, "fmin": 0, "fmax": 8000}
"""The addon's ``audio`` section: what the mels are computed with."""


def load_module(path: Path, name: str, package: bool = False) -> ModuleType:
    """Import one file (or a package's ``__init__.py``) as module ``name`` (cached in sys.modules)."""
    if name in sys.modules:
        return sys.modules[name]
    locations = [str(path.parent)] if package else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def model_module() -> ModuleType:
    """``addons/fastpitch-demo/model.py``."""
    return load_module(ADDON / "model.py", "fastpitch_demo_model")


def vocoder_module() -> ModuleType:
    """``addons/fastpitch-demo/vocoder.py``: the neural vocoder the addon exports."""
    return load_module(ADDON / "vocoder.py", "fastpitch_demo_vocoder")


def phonemes_module() -> ModuleType:
    """``ttsstack/runtime/phonemes.py``: espeak-ng rendering and phonemization."""
    return load_module(REPO / "ttsstack" / "runtime" / "phonemes.py", "fastpitch_demo_phonemes")


def audio_module() -> ModuleType:
    """The ``ttsstack/audio`` package: ``MelSettings``, ``log_mel_spectrogram``, ``GriffinLim``, ``write_wav``."""
    return load_module(REPO / "ttsstack" / "audio" / "__init__.py", "fastpitch_demo_audio", package=True)


class Split:
    """One npz of make_dataset.py as per-utterance tensors."""

    def __init__(self, path: Path):
        data = np.load(path)
        tok_edges = np.concatenate([[0], np.cumsum(data["token_lengths"])])
        mel_edges = np.concatenate([[0], np.cumsum(data["mel_lengths"])])
        tokens, durations, mels = (torch.from_numpy(data[k]) for k in ("tokens", "durations", "mels"))
        self.tokens = [tokens[a:b] for a, b in zip(tok_edges[:-1], tok_edges[1:])]
        self.durations = [durations[a:b] for a, b in zip(tok_edges[:-1], tok_edges[1:])]
        self.mels = [mels[a:b] for a, b in zip(mel_edges[:-1], mel_edges[1:])]

    def __len__(self) -> int:
        return len(self.tokens)

    def batches(self, max_frames: int, rng: random.Random | None) -> list[list[int]]:
        """Index lists of similar-length utterances, each padded batch at most ``max_frames`` frames."""
        jitter = (lambda: rng.random()) if rng else (lambda: 0.0)
        order = sorted(range(len(self)), key=lambda i: len(self.mels[i]) + 8 * jitter())
        out, current = [], []
        for i in order:
            if current and (len(current) + 1) * max(len(self.mels[j]) for j in current + [i]) > max_frames:
                out.append(current)
                current = []
            current.append(i)
        out.append(current)
        if rng:
            rng.shuffle(out)
        return out

    def training_batches(self, max_frames: int, rng: random.Random, steps: int) -> Iterator[tuple[int, list[int]]]:
        """``steps`` batches, epoch after epoch (shuffled by ``rng``), each with its epoch number (from 1)."""
        epoch = 0
        while steps > 0:
            epoch += 1
            batches = self.batches(max_frames, rng)[:steps]
            steps -= len(batches)
            for ids in batches:
                yield epoch, ids

    def collate(self, ids: list[int]) -> dict[str, torch.Tensor]:
        """Padded tensors of the utterances ``ids`` (tokens, durations, mel and their masks)."""
        n_tok = max(len(self.tokens[i]) for i in ids)
        n_mel = max(len(self.mels[i]) for i in ids)
        batch = {
            "tokens": torch.zeros(len(ids), n_tok, dtype=torch.int64),  # pad id 0
            "durations": torch.zeros(len(ids), n_tok, dtype=torch.int64),
            "token_mask": torch.zeros(len(ids), n_tok),
            "mel": torch.zeros(len(ids), n_mel, self.mels[ids[0]].shape[1]),
            "mel_mask": torch.zeros(len(ids), n_mel),
        }
        for row, i in enumerate(ids):
            t, m = len(self.tokens[i]), len(self.mels[i])
            batch["tokens"][row, :t] = self.tokens[i]
            batch["durations"][row, :t] = self.durations[i]
            batch["token_mask"][row, :t] = 1
            batch["mel"][row, :m] = self.mels[i]
            batch["mel_mask"][row, :m] = 1
        return batch


@dataclasses.dataclass
class DataSet:
    """A make_dataset.py folder: its symbol table, its ``info.json``, and its train and held-out splits."""

    folder: Path
    table: dict
    info: dict
    train: Split
    heldout: Split

    @classmethod
    def read(cls, folder: Path) -> "DataSet":
        """Load the folder's symbols.json, info.json, train.npz and heldout.npz."""
        return cls(folder, json.loads((folder / "symbols.json").read_text(encoding="utf-8")),
                   json.loads((folder / "info.json").read_text(encoding="utf-8")),
                   Split(folder / "train.npz"), Split(folder / "heldout.npz"))

    @property
    def n_symbols(self) -> int:
        """Size of the phoneme symbol table (the embedding's rows)."""
        return len(self.table["symbols"])

    @property
    def n_mels(self) -> int:
        """Mel bins per frame."""
        return self.train.mels[0].shape[1]


def seed_everything(seed: int) -> None:
    """One thread, and Python's, NumPy's and torch's generators seeded, so that a run repeats."""
    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_parser(doc: str, *, data: str, out: Path, out_help: str, steps: int, lr: float, warmup: int,
                    eval_every: int) -> argparse.ArgumentParser:
    """The flags every training script takes: the data folder, ``--out``, and the schedule's.

    ``--steps``, ``--lr``, ``--warmup`` (``learning_rate``), ``--eval-every``
    and ``--seed``, with the script's defaults; the description is the first
    paragraph of the script's docstring ``doc``.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("data", type=Path, help=data)
    parser.add_argument("--out", type=Path, default=out, help=out_help)
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps (the cosine decay's length)")
    parser.add_argument("--lr", type=float, default=lr, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=warmup, help="steps of linear learning rate warmup")
    parser.add_argument("--eval-every", type=int, default=eval_every,
                        help="steps between held-out evaluations (each writes the weights)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of every random generator")
    return parser


def learning_rate(step: int, args: argparse.Namespace, floor: float, time_spent: float = 0.0) -> float:
    """Learning rate at ``step`` under the flags of ``training_parser``.

    Linear warmup to ``--lr`` over ``--warmup`` steps, then a cosine decay to
    ``floor * lr`` over the rest of ``--steps``, or sooner where ``time_spent``
    (the share of a time budget used, 0 to 1) is further along.
    """
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, max(time_spent, (step - args.warmup) / max(1, args.steps - args.warmup)))
    return args.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@contextlib.contextmanager
def progress(log_path: Path, columns: list[str], steps: int, desc: str) -> Iterator[tuple[Callable[[list], None], tqdm]]:
    """The loss curve's CSV writer (header ``columns``, each row flushed) and a progress bar of ``steps``."""
    with open(log_path, "w", newline="") as log_file, tqdm(total=steps, desc=desc, unit="step") as bar:
        writer = csv.writer(log_file)
        writer.writerow(columns)

        def write(row: list) -> None:
            writer.writerow(row)
            log_file.flush()

        yield write, bar


def update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """One optimizer step at learning rate ``lr``, the gradient norm clipped at 1."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def smooth(running: dict[str, float], terms: dict[str, torch.Tensor], decay: float) -> None:
    """Update ``running``, the exponential moving average of each loss term (started at its first value)."""
    for k, v in terms.items():
        value = float(v.detach())
        running[k] = decay * running.get(k, value) + (1 - decay) * value


@torch.no_grad()
def split_means(losses: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]], model: torch.nn.Module,
                split: Split, max_frames: int) -> dict[str, float]:
    """Each term of ``losses(batch)`` averaged over a split's utterances, the model in eval mode meanwhile."""
    model.eval()
    sums, weight = {}, 0
    for ids in split.batches(max_frames, None):
        for k, v in losses(split.collate(ids)).items():
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


def train_on_split(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: DataSet,
                   args: argparse.Namespace, *, losses: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
                   objective: Callable[[dict[str, torch.Tensor]], torch.Tensor], logged: tuple[str, ...],
                   decay: float, log_name: str, metadata: dict[str, str]) -> dict:
    """Teacher-forced training on a make_dataset.py data set, as both demo voices train.

    ``--steps`` batches of at most ``--max-frames`` padded frames, each
    minimizing ``objective(losses(batch))`` at the ``learning_rate`` schedule
    (5% floor). Every ``--eval-every`` steps and at the end: the ``logged``
    loss terms (moving average with ``decay``, and held-out means) go to the
    CSV ``log_name`` in the data folder and the terminal, and the weights to
    ``--out``/weights.safetensors, their metadata the run's settings, results
    and the model's own ``metadata``. The symbol table goes beside them at
    the end. Returns the steps, epochs, seconds, last held-out means and paths.
    """
    args.out.mkdir(parents=True, exist_ok=True)
    weights_path, log_path = args.out / "weights.safetensors", data.folder / log_name
    rng = random.Random(args.seed)
    start = time.time()
    step, epoch, heldout_means = 0, 0, {}
    running: dict[str, float] = {}
    columns = ["step", "epoch", "seconds", "lr"] + list(logged) + [f"val_{k}" for k in logged]
    with progress(log_path, columns, args.steps, "train") as (write, bar):
        for epoch, ids in data.train.training_batches(args.max_frames, rng, args.steps):
            terms = losses(data.train.collate(ids))
            update(model, optimizer, objective(terms), learning_rate(step, args, floor=0.05))
            step += 1
            smooth(running, terms, decay)
            bar.update(1)
            bar.set_postfix(epoch=epoch, **{k: f"{running[k]:.3f}" for k in logged[:2]})
            if step % args.eval_every == 0 or step == args.steps:
                heldout_means = split_means(losses, model, data.heldout, args.max_frames)
                seconds = round(time.time() - start, 1)
                write([step, epoch, seconds, f"{learning_rate(step - 1, args, floor=0.05):.2e}"]
                      + [f"{running[k]:.4f}" for k in logged] + [f"{heldout_means[k]:.4f}" for k in logged])
                tqdm.write(f"step {step:5d} epoch {epoch:3d} {seconds:7.0f}s  "
                           + " ".join(f"{k} {running[k]:.3f}" for k in logged) + "  heldout "
                           + " ".join(f"{k} {heldout_means[k]:.3f}" for k in logged))
                save_weights(model, weights_path, {
                    "format": "1", "n_symbols": str(data.n_symbols), "n_mels": str(data.n_mels), **metadata,
                    "steps": str(step), "seed": str(args.seed), "train_seconds": str(round(time.time() - start)),
                    "espeak": json.dumps(data.table.get("espeak", {})), "sentences": str(data.info.get("source", "")),
                    "heldout": json.dumps({k: round(v, 4) for k, v in heldout_means.items()})})
    shutil.copyfile(data.folder / "symbols.json", args.out / "symbols.json")
    return {"steps": step, "epochs": epoch, "seconds": round(time.time() - start), "heldout": heldout_means,
            "weights": str(weights_path), "log": str(log_path)}
