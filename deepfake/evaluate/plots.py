"""The pictures of an evaluation: ROC curve, confusion matrix and reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake.metrics import ECE_BINS, reliability_bins, roc_curve
from deepfake.preprocess import LABELS


def plot_roc(p_fake, labels, metrics: dict, title: str, out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance (AUC = 0.5)")
    if metrics["auroc"] is not None:
        fpr, tpr = roc_curve(p_fake, labels)
        ax.plot(fpr, tpr, color="C0", lw=2, label=f"ROC (AUC = {metrics['auroc']:.3f})")
        eer = metrics["eer"]
        ax.plot([eer], [1 - eer], "o", color="C3", label=f"EER = {eer:.3f} (threshold {metrics['eer_threshold']:.3f})")
        (tn, fp), (fn, tp) = metrics["confusion_matrix"]["matrix"]
        ax.plot(
            [fp / max(1, tn + fp)],
            [tp / max(1, tp + fn)],
            "s",
            color="C2",
            label=f"model threshold {metrics['threshold']:g}",
        )
    else:
        ax.text(0.5, 0.5, "only one class present:\nno ROC curve", ha="center", va="center")
    ax.set_xlabel("false positive rate (real images called fake)")
    ax.set_ylabel("true positive rate (fakes caught)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title, fontsize="medium")
    fig.savefig(out, dpi=110)


def plot_confusion(metrics: dict, title: str, out: Path) -> None:
    from matplotlib.figure import Figure

    matrix = np.array(metrics["confusion_matrix"]["matrix"])
    share = matrix / np.maximum(1, matrix.sum(axis=1, keepdims=True))
    fig = Figure(figsize=(5, 4.4), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{matrix[i, j]}\n{share[i, j]:.1%}", ha="center", va="center", color=colour, fontsize=13)
    ax.set_xticks([0, 1], LABELS)
    ax.set_yticks([0, 1], LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set_title(f"{title}\nthreshold {metrics['threshold']:g}", fontsize="medium")
    fig.savefig(out, dpi=110)


def plot_calibration(p_fake, labels, metrics: dict, title: str, temperature: float | None, out: Path) -> None:
    """The reliability diagram: per bin of p_fake, the share of images that are fake against the mean p_fake
    (on the diagonal when p_fake means what it says), and below it how many images fell in each bin."""
    from matplotlib.figure import Figure

    table = reliability_bins(p_fake, labels, ECE_BINS, by="p_fake")
    edges, count = table["edges"], table["count"]
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    used = count > 0
    fig = Figure(figsize=(5.5, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    top.bar(
        centres[used], table["observed"][used], width[used], color="C0", alpha=0.6, edgecolor="C0", label="share fake"
    )
    top.plot(table["predicted"][used], table["observed"][used], "o", color="C3", ms=5, label="at the bin's mean p_fake")
    top.set_ylabel("share of images that are fake")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.01)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")
    y = np.asarray(labels)
    p = np.asarray(p_fake, np.float64)
    for label, name, colour in ((0, "real", "C2"), (1, "fake", "C3")):
        bottom.hist(p[y == label], bins=edges, histtype="step", lw=1.5, color=colour, label=name)
    bottom.set_xlabel("p_fake (bins of equal width)")
    bottom.set_ylabel("images")
    bottom.legend(fontsize="small")
    bottom.grid(alpha=0.3)
    ece = metrics.get("ece")
    scaled = "no temperature in the file (T = 1)" if temperature is None else f"temperature {temperature:g}"
    top.set_title(
        f"{title}\nECE {'n/a' if ece is None else f'{ece:.3f}'} ({ECE_BINS} bins of confidence), {scaled}",
        fontsize="medium",
    )
    fig.savefig(out, dpi=110)
