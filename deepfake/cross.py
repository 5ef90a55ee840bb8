"""The cross-dataset table, the way DeepfakeBench reports a detector: models in rows, datasets in columns.

``cross_dataset.csv`` holds one row per model: its AUROC on each dataset under the dataset's name, then
accuracy (``<dataset> acc``) and equal error rate (``<dataset> eer``); ``cross_dataset.png`` draws the AUROC
as a heatmap with the figures in the cells. :mod:`deepfake.evaluate` scores the cells.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

CELL_METRICS = ("auroc", "acc", "eer")


def table_rows(
    cells: Mapping[tuple[str, str], Mapping], models: Sequence[str], datasets: Sequence[str]
) -> tuple[list[str], list[list]]:
    """The csv's header and rows: AUROC per dataset, then accuracy per dataset, then EER per dataset."""
    header = ["model", *datasets, *(f"{d} acc" for d in datasets), *(f"{d} eer" for d in datasets)]
    rows = []
    for model in models:
        row: list = [model]
        for metric in CELL_METRICS:
            row += [_round(cells[model, d].get(metric)) for d in datasets]
        rows.append(row)
    return header, rows


def _round(value) -> str:
    return "" if value is None else f"{value:.4f}"


def write_table(cells, models, datasets, path: Path) -> None:
    header, rows = table_rows(cells, models, datasets)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def format_table(cells, models, datasets) -> str:
    """The AUROC table as Markdown, with accuracy and EER beside each figure."""
    lines = [
        "| model | " + " | ".join(datasets) + " |",
        "|---|" + "---|" * len(datasets),
    ]
    for model in models:
        figures = []
        for d in datasets:
            cell = cells[model, d]
            auroc = "n/a" if cell.get("auroc") is None else f"{cell['auroc']:.3f}"
            figures.append(f"{auroc} (acc {cell['acc']:.3f}, EER {_or_na(cell.get('eer'))})")
        lines.append(f"| {model} | " + " | ".join(figures) + " |")
    return "\n".join(lines)


def _or_na(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def plot_heatmap(cells, models, datasets, path: Path, title: str = "") -> None:
    """AUROC of every model on every dataset, chance (0.5) white, 1.0 dark green, below chance red."""
    from matplotlib.figure import Figure

    auroc = np.array([[_nan(cells[m, d].get("auroc")) for d in datasets] for m in models])
    fig = Figure(figsize=(1.9 * len(datasets) + 2.6, 0.9 * len(models) + 1.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(auroc, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i, model in enumerate(models):
        for j, d in enumerate(datasets):
            cell = cells[model, d]
            text = "n/a" if np.isnan(auroc[i, j]) else f"{auroc[i, j]:.3f}"
            ax.text(j, i - 0.1, text, ha="center", va="center", fontsize=14, weight="bold")
            ax.text(j, i + 0.22, f"acc {cell['acc']:.3f}  EER {_or_na(cell.get('eer'))}", ha="center", fontsize=8)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_yticks(range(len(models)), models)
    ax.set_xlabel("tested on")
    ax.set_ylabel("model")
    fig.colorbar(image, ax=ax, label="ROC AUC (0.5: chance)")
    ax.set_title(title or "Cross-dataset ROC AUC", fontsize="medium")
    fig.savefig(path, dpi=110)


def _nan(value) -> float:
    return float("nan") if value is None else float(value)
