"""Mel-cepstral distortion (frame-aligned and after DTW), the reference-vs-predicted mel plot, the summary table.

Shared by the demo voices' evaluations (``evaluate.py`` here and
``addons/tacotron2-demo/training/evaluate.py``). Mel cepstra come from the
natural-log mel spectra by a DCT-II scaled as SPTK's mel-cepstrum, see
``evaluate.py``'s docstring for the formula.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LN10 = np.log(10.0)


def mel_cepstrum(log_mel: np.ndarray, order: int) -> np.ndarray:
    """Cepstral coefficients 1..order of each natural-log mel frame ``[T, N]`` -> ``[T, order]``."""
    n = log_mel.shape[1]
    k = np.arange(1, order + 1)[:, None]
    basis = np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n)) * (2.0 / n)
    return log_mel.astype(np.float64) @ basis.T


def mcd_frames(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame MCD in dB between aligned cepstra ``[T, K]``."""
    return (10.0 / LN10) * np.sqrt(2.0 * ((a - b) ** 2).sum(axis=1))


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost monotonic alignment (steps (1,0), (0,1), (1,1)) of a ``[N, M]`` cost matrix."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev = acc[i], acc[i - 1]
        diag_up = np.minimum(prev[:-1], prev[1:]) + cost[i - 1]  # from (i-1, j-1) or (i-1, j)
        for j in range(1, m + 1):  # the left neighbour depends on this row: sequential
            row[j] = min(diag_up[j - 1], row[j - 1] + cost[i - 1, j - 1])
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = np.argmin([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    path.reverse()
    rows, cols = zip(*path)
    return np.array(rows), np.array(cols)


def mcd_dtw(reference: np.ndarray, synthesized: np.ndarray) -> float:
    """MCD after DTW alignment, averaged over the path."""
    cost = np.sqrt(((reference[:, None, :] - synthesized[None, :, :]) ** 2).sum(-1))
    rows, cols = dtw_path(cost)
    return float(mcd_frames(reference[rows], synthesized[cols]).mean())


def plot(path: Path, text: str, panels: list[tuple[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low = min(p.min() for _, p in panels)
    high = max(p.max() for _, p in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels)), constrained_layout=True)
    for ax, (title, mel) in zip(axes, panels):
        image = ax.imshow(mel.T, origin="lower", aspect="auto", interpolation="nearest", vmin=low, vmax=high)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mel bin")
    axes[-1].set_xlabel("frame (11.6 ms)")
    fig.colorbar(image, ax=axes, label="ln mel")
    fig.suptitle(text, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(rows: list[dict[str, float]], labels: dict[str, str]) -> dict[str, dict[str, float]]:
    """Mean, median and p90 of each labelled metric over the rows; printed as a table and returned."""
    summary = {}
    print(f"{'metric':<38}{'mean':>8}{'median':>8}{'p90':>8}")
    for key, label in labels.items():
        values = np.array([r[key] for r in rows])
        summary[key] = {"mean": float(values.mean()), "median": float(np.median(values)),
                        "p90": float(np.percentile(values, 90))}
        print(f"{label:<38}{values.mean():8.3f}{np.median(values):8.3f}{np.percentile(values, 90):8.3f}")
    return summary
