"""First audio when text arrives as an LLM writes it: speaking clause by clause versus waiting for the whole text.

Feeds a text to ``Voice.stream_text`` word by word at ``--tokens-per-second``
(an LLM's pace) and measures, from the first token, the time to the first
audio chunk; then the same text given whole once its last token has arrived
(``Voice.stream_audio``), the usual way. Reports the medians over
``--runs`` runs, the time the text took to arrive, and writes
``text_stream.json`` to ``--out`` (default ``benchmarks/out/``; ``--record``:
``benchmarks/results/``).

    python benchmarks/text_stream.py --addon compiled/fastpitch --backend cpu
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import time

import anyio
import torch

import ttsstack
from common import add_deprecated_alias, add_output_flags, output_dir, parser_for

TEXT = ("Sure, I can help with that. Your meeting moved to three thirty, and I will send the new invitation "
        "to everyone on the list right away.")


def tokens(text: str) -> list[str]:
    """The text in word-sized fragments, each with the space before it, as an LLM streams them."""
    return re.findall(r"\s*\S+", text)


async def clause_by_clause(voice, text: str, rate: float) -> tuple[float, float]:
    """Seconds from the first token to the first audio chunk, and to the last token, fed to ``stream_text``."""
    start = time.perf_counter()
    last_token = 0.0

    async def fragments():
        nonlocal last_token
        for index, token in enumerate(tokens(text)):
            await anyio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            yield token
        last_token = time.perf_counter() - start

    first = None
    async for _ in voice.stream_text(fragments()):
        first = first if first is not None else time.perf_counter() - start
    return first, last_token


def whole_text(voice, text: str, rate: float) -> float:
    """Seconds from the first token to the first audio chunk when the whole text is awaited, then spoken."""
    arrival = (len(tokens(text)) - 1) / rate
    start = time.perf_counter()
    audio = voice.stream_audio(text)
    next(audio)
    audio.close()
    return arrival + time.perf_counter() - start


def main() -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--addon", default="ttsstack/demo_addon", help="addon folder (compiled, or source)")
    parser.add_argument("--backend", default="cpu", help="backend to load the addon on")
    parser.add_argument("--tokens-per-second", type=float, default=30.0, help="pace at which the text arrives")
    parser.add_argument("--runs", type=int, default=5, help="runs of each way; medians are reported")
    add_deprecated_alias(parser, "--repeat", "--runs", dest="runs", type=int)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--text", default=TEXT, help="the text")
    add_output_flags(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    voice = ttsstack.load(args.addon, backend=args.backend)
    streamed = [anyio.run(clause_by_clause, voice, args.text, args.tokens_per_second) for _ in range(args.runs)]
    whole = [whole_text(voice, args.text, args.tokens_per_second) for _ in range(args.runs)]
    result = {
        "addon": voice.spec.name, "backend": args.backend, "threads": args.threads, "host": platform.node(),
        "tokens": len(tokens(args.text)), "tokens_per_second": args.tokens_per_second, "runs": args.runs,
        "text_arrival_s": statistics.median(s[1] for s in streamed),
        "first_audio_clause_by_clause_s": statistics.median(s[0] for s in streamed),
        "first_audio_whole_text_s": statistics.median(whole),
    }
    print(f"{voice.spec.name} on {args.backend}, {result['tokens']} tokens at {args.tokens_per_second:g}/s "
          f"(text arrives over {result['text_arrival_s']:.2f} s):")
    print(f"  first audio, clause by clause (Voice.stream_text): {result['first_audio_clause_by_clause_s']:.3f} s")
    print(f"  first audio, whole text then stream_audio:         {result['first_audio_whole_text_s']:.3f} s")
    out = output_dir(parser, args) / "text_stream.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
