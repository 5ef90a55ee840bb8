"""Robustness: the same evaluation under everyday image degradations.

Each perturbation acts on the decoded full-size uint8 RGB image, before the face stage and
the model's own resize and normalisation, as a re-shared or re-encoded picture would reach it. Written by
``evaluate.py --robustness`` as ``robustness.json``, ``robustness.md`` and ``robustness.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from deepfake.images import decode_image, encode_image
from deepfake.metrics import ALIASES, binary_metrics

# An image perturbation: uint8 RGB (H, W, 3) and a generator seeded per image -> uint8 RGB.
Perturbation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Gaussian noise on the 0-255 scale: visible in flat regions, about what a phone camera adds in dim light.
NOISE_SIGMA = 8.0


def jpeg(quality: int) -> Perturbation:
    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return decode_image(encode_image(rgb, ".jpg", quality), max_pixels=None)

    return apply


def blur(sigma: float) -> Perturbation:
    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma)  # kernel size from sigma (about 6 sigma wide)

    return apply


def downscale(factor: float = 0.5) -> Perturbation:
    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    return apply


def noise(sigma: float = NOISE_SIGMA) -> Perturbation:
    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noisy = rgb.astype(np.float32) + rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    return apply


def framed(scale: float = 2.0, quality: int = 95) -> Perturbation:
    """The image at a random place inside a ``scale`` times larger, blurred copy of itself, saved as JPEG: a face
    crop turned into a photo with surroundings, the way users' pictures reach the detector."""

    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = rgb.shape[:2]
        big_w, big_h = round(w * scale), round(h * scale)
        frame = cv2.GaussianBlur(cv2.resize(rgb, (big_w, big_h), interpolation=cv2.INTER_LINEAR), (0, 0), 8)
        x, y = int(rng.integers(0, big_w - w + 1)), int(rng.integers(0, big_h - h + 1))
        frame[y : y + h, x : x + w] = rgb
        return decode_image(encode_image(frame, ".jpg", quality), max_pixels=None)

    return apply


PERTURBATIONS: dict[str, Perturbation] = {
    "jpeg_q90": jpeg(90),
    "jpeg_q70": jpeg(70),
    "jpeg_q50": jpeg(50),
    "blur_sigma1": blur(1.0),
    "blur_sigma2": blur(2.0),
    "downscale_half": downscale(0.5),
    f"noise_sigma{NOISE_SIGMA:g}": noise(NOISE_SIGMA),
    "framed_2x": framed(2.0),
}

DESCRIPTIONS = {
    "clean": "none (as stored)",
    "jpeg_q90": "JPEG re-encode, quality 90",
    "jpeg_q70": "JPEG re-encode, quality 70",
    "jpeg_q50": "JPEG re-encode, quality 50",
    "blur_sigma1": "Gaussian blur, sigma 1 px",
    "blur_sigma2": "Gaussian blur, sigma 2 px",
    "downscale_half": "downscale to half (area), back up (bilinear)",
    f"noise_sigma{NOISE_SIGMA:g}": f"Gaussian noise, sigma {NOISE_SIGMA:g} (0-255)",
    "framed_2x": "placed at random in a 2x larger blurred copy of itself, JPEG 95",
}


def robustness_rows(p_fake: dict[str, np.ndarray], labels: np.ndarray, threshold: float) -> list[dict]:
    """One row per condition of ``p_fake`` ("clean" first, then each perturbation's name): acc, precision,
    recall, f1, auroc, average precision, EER, and auroc_drop from clean (with the aliases of metrics.ALIASES,
    and auc_drop, the drop's older name)."""
    keys = ("acc", "precision", "recall", "f1", "auroc", "average_precision", "eer", *ALIASES)
    rows = []
    for name, p in p_fake.items():
        m = binary_metrics(p, labels, threshold)
        rows.append({"perturbation": name, "description": DESCRIPTIONS.get(name, name), **{k: m[k] for k in keys}})
    clean_auc = rows[0]["auroc"]
    for row in rows:
        auc = row["auroc"]
        row["auroc_drop"] = row["auc_drop"] = None if auc is None or clean_auc is None else clean_auc - auc
    return rows


def _cell(value, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def format_markdown(rows: list[dict]) -> str:
    lines = [
        "| perturbation | what | accuracy | ROC AUC | AP | EER | AUC drop vs clean |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['perturbation']} | {r['description']} | {_cell(r['acc'])} | {_cell(r['auroc'])} | "
            f"{_cell(r['average_precision'])} | {_cell(r['eer'])} | {_cell(r['auroc_drop'], signed=True)} |"
        )
    return "\n".join(lines)


def plot_robustness(rows: list[dict], title: str, out: Path) -> None:
    from matplotlib.figure import Figure

    names = [r["perturbation"] for r in rows]
    aucs = [r["auroc"] if r["auroc"] is not None else 0.0 for r in rows]
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.subplots()
    colours = ["C0" if n == "clean" else "C1" for n in names]
    bars = ax.bar(names, aucs, color=colours, zorder=2)
    ax.bar_label(bars, labels=[f"{a:.3f}" for a in aucs], label_type="center", color="white")
    ax.axhline(aucs[0], color="C0", linestyle="--", zorder=1, label=f"clean AUC {aucs[0]:.3f}")
    ax.axhline(0.5, color="grey", linestyle=":", zorder=1, label="chance (0.5)")
    # Bars start at chance (or below it if a perturbation falls that far): the height is skill, not area.
    ax.set_ylim(min(0.5, np.floor((min(aucs) - 0.05) * 10) / 10), 1.0)
    ax.set_ylabel("ROC AUC")
    ax.set_xlabel("perturbation (applied before the model's preprocessing)")
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Robustness: {title}", fontsize="medium")
    fig.savefig(out, dpi=110)


def write_robustness(rows: list[dict], out: Path, title: str) -> None:
    (out / "robustness.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "robustness.md").write_text(f"# Robustness: {title}\n\n{format_markdown(rows)}\n")
    plot_robustness(rows, title, out / "robustness.png")
