"""Render English sentences with espeak-ng into a training set for the demo voice.

Each sentence is spoken by espeak-ng (voice ``en-us``, 22,050 Hz) through
``ttsstack.runtime.phonemes.render``, which also reports the phoneme tokens and
their sample spans from espeak-ng's own phoneme events. The script stores, per
utterance, the token ids, the frames per token (summing to the mel length) and
the log-mel spectrogram computed with the addon's audio settings.

Sentences: the example sentences quoted in WordNet 3.0's glosses, read from
Debian's ``wordnet-base`` package (``apt-get install wordnet-base``; WordNet 3.0
license, permissive: use, copy, modify and distribute with the copyright notice),
or any UTF-8 file with one sentence per line (``--sentences FILE``).

Output folder (not committed)::

    train.npz, heldout.npz   tokens, token_lengths, durations, mels, mel_lengths (concatenated)
    metadata.jsonl           one line per utterance: split, text, phonemes, durations
    symbols.json             the phoneme symbol table (pad first), espeak-ng version
    audio_train.npz, audio_heldout.npz   with --audio: espeak-ng's int16 samples
                             (audio, audio_lengths; concatenated), for the vocoder
    info.json                settings, counts, hours of audio, sentence source

Usage::

    python addons/fastpitch-demo/training/make_dataset.py out/fastpitch-demo-data --count 4000 --heldout 100
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import AUDIO, audio_module, phonemes_module  # noqa: E402
PAD = "<pad>"
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_SOURCE = ("WordNet 3.0 gloss examples (Debian package wordnet-base), "
                  "WordNet 3.0 license (Princeton University, permissive)")
_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,;:.!?'-]*$")


def wordnet_sentences(folder: Path) -> list[str]:
    """The quoted example sentences of WordNet's noun, verb, adjective and adverb glosses."""
    files = [folder / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(
            f"WordNet data not found ({', '.join(missing)}): `apt-get install wordnet-base`, "
            "or give --sentences FILE (one sentence per line)"
        )
    out = []
    for path in files:
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # license header
            out.extend(m.strip() for m in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]))
    return out


def clean(sentence: str, min_words: int, max_words: int) -> str | None:
    """A speakable sentence (capitalised, ending in punctuation), or None to skip it."""
    sentence = " ".join(sentence.split())
    if not _ALLOWED.match(sentence) or not min_words <= len(sentence.split()) <= max_words:
        return None
    sentence = sentence[0].upper() + sentence[1:]
    return sentence if sentence[-1] in ".!?" else sentence.rstrip(",;:-'") + "."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder, created (out/ is git-ignored)")
    parser.add_argument("--count", type=int, default=4000, help="training utterances (default 4000)")
    parser.add_argument("--heldout", type=int, default=100, help="held-out utterances (default 100)")
    parser.add_argument("--sentences", type=Path, help="one sentence per line (default: WordNet examples)")
    parser.add_argument("--min-words", type=int, default=6)
    parser.add_argument("--max-words", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--audio", action="store_true",
                        help="also store espeak-ng's int16 audio (audio_*.npz, ~1 GB per 3 h), for train_vocoder.py")
    args = parser.parse_args(argv)

    if args.sentences:
        raw, source = args.sentences.read_text(encoding="utf-8").splitlines(), str(args.sentences)
    else:
        raw, source = wordnet_sentences(WORDNET_DIR), WORDNET_SOURCE
    pool = sorted({s for s in (clean(r, args.min_words, args.max_words) for r in raw) if s})
    random.Random(args.seed).shuffle(pool)
    need = args.count + args.heldout
    if len(pool) < need:
        raise SystemExit(f"only {len(pool)} usable sentences, {need} asked for")
    splits = {"heldout": pool[: args.heldout], "train": pool[args.heldout : need]}

    torch.set_num_threads(1)
    mel_lib, espeak = audio_module(), phonemes_module()
    settings = mel_lib.MelSettings(**AUDIO)
    info = espeak.espeak_info()
    if info["sample_rate"] != settings.sample_rate:
        raise SystemExit(f"espeak-ng speaks at {info['sample_rate']} Hz, the addon needs {settings.sample_rate}")
    args.out.mkdir(parents=True, exist_ok=True)
    rendered: dict[str, list[tuple[str, list[str], list[int], np.ndarray]]] = {}
    waveforms: dict[str, list[np.ndarray]] = {split: [] for split in splits}
    seconds = 0.0
    start = time.time()
    for split, sentences in splits.items():
        rendered[split] = []
        for text in tqdm(sentences, desc=f"espeak-ng {split}", unit="utt"):
            speech = espeak.render(text, espeak.DEFAULT_VOICE)
            mel = mel_lib.log_mel_spectrogram(speech.audio, settings)
            durations = speech.frame_durations(settings.hop_length)
            if sum(durations) != mel.shape[0]:
                raise AssertionError(f"durations sum to {sum(durations)}, mel has {mel.shape[0]} frames: {text!r}")
            seconds += len(speech.audio) / settings.sample_rate
            rendered[split].append((text, speech.phonemes, durations, mel))
            if args.audio:
                waveforms[split].append(np.round(speech.audio * 32768).clip(-32768, 32767).astype(np.int16))

    for split, items in waveforms.items():
        if args.audio:
            np.savez(args.out / f"audio_{split}.npz", audio=np.concatenate(items),
                     audio_lengths=np.array([len(a) for a in items], dtype=np.int64))
    inventory = sorted({p for items in rendered.values() for _, ph, _, _ in items for p in ph})
    symbols = [PAD] + inventory
    ids = {s: i for i, s in enumerate(symbols)}
    with open(args.out / "metadata.jsonl", "w", encoding="utf-8") as meta:
        for split, items in rendered.items():
            for text, phonemes, durations, _ in items:
                meta.write(json.dumps({"split": split, "text": text, "phonemes": phonemes, "durations": durations}) + "\n")
            np.savez(
                args.out / f"{split}.npz",
                tokens=np.array([ids[p] for _, ph, _, _ in items for p in ph], dtype=np.int64),
                token_lengths=np.array([len(ph) for _, ph, _, _ in items], dtype=np.int64),
                durations=np.array([d for _, _, du, _ in items for d in du], dtype=np.int64),
                mels=np.concatenate([m for _, _, _, m in items]).astype(np.float32),
                mel_lengths=np.array([m.shape[0] for _, _, _, m in items], dtype=np.int64),
            )
    table = {"format": 1, "type": "phonemes", "pad": PAD, "symbols": symbols,
             "espeak": {"voice": espeak.DEFAULT_VOICE, "version": info["version"]}}
    (args.out / "symbols.json").write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {"source": source, "usable_sentences": len(pool), "seed": args.seed, "audio": AUDIO, "espeak": info,
               "utterances": {k: len(v) for k, v in rendered.items()}, "symbols": len(symbols),
               "hours": round(seconds / 3600, 3), "render_seconds": round(time.time() - start, 1)}
    (args.out / "info.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
