"""Robustness: the same evaluation under everyday image degradations (the set: configs/robustness.yaml).

Each perturbation acts on the decoded full-size uint8 RGB image, before the face stage and
the model's own resize and normalisation, as a re-shared or re-encoded picture would reach it. Written by
``evaluate.py --robustness`` as ``robustness.json``, ``robustness.md`` and ``robustness.png``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np

from deepfake import bundled_file
from deepfake.errors import ConfigError
from deepfake.images import decode_image, encode_image
from deepfake.metrics import METRIC_ALIASES, binary_metrics

# An image perturbation: uint8 RGB (H, W, 3) and a generator seeded per image -> uint8 RGB.
Perturbation = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def jpeg(quality: int) -> Perturbation:
    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return decode_image(encode_image(rgb, ".jpg", quality), max_pixels=None)

    apply.description = f"JPEG re-encode, quality {quality}"
    return apply


def blur(sigma: float) -> Perturbation:
    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma)  # kernel size from sigma (about 6 sigma wide)

    apply.description = f"Gaussian blur, sigma {sigma:g} px"
    return apply


def downscale(factor: float) -> Perturbation:
    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    apply.description = (
        "downscale to half (area), back up (bilinear)"
        if factor == 0.5
        else (f"downscale by {factor:g} (area), back up (bilinear)")
    )
    return apply


def noise(sigma: float) -> Perturbation:
    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noisy = rgb.astype(np.float32) + rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    apply.description = f"Gaussian noise, sigma {sigma:g} (0-255)"
    return apply


def framed(scale: float, quality: int) -> Perturbation:
    """The image at a random place inside a ``scale`` times larger, blurred copy of itself, saved as JPEG: a face
    crop turned into a photo with surroundings, the way users' pictures reach the detector."""

    def apply(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = rgb.shape[:2]
        big_w, big_h = round(w * scale), round(h * scale)
        frame = cv2.GaussianBlur(cv2.resize(rgb, (big_w, big_h), interpolation=cv2.INTER_LINEAR), (0, 0), 8)
        x, y = int(rng.integers(0, big_w - w + 1)), int(rng.integers(0, big_h - h + 1))
        frame[y : y + h, x : x + w] = rgb
        return decode_image(encode_image(frame, ".jpg", quality), max_pixels=None)

    apply.description = f"placed at random in a {scale:g}x larger blurred copy of itself, JPEG {quality}"
    return apply


KINDS: dict[str, Callable[..., Perturbation]] = {
    "jpeg": jpeg,
    "blur": blur,
    "downscale": downscale,
    "noise": noise,
    "framed": framed,
}
DEFAULT_SET = "configs/robustness.yaml"


def perturbations(spec: Mapping[str, Mapping]) -> dict[str, Perturbation]:
    """The perturbations of a set as configs/robustness.yaml writes it: ``{name: {kind: ..., <settings>}}``.
    A ConfigError names an unknown kind or a setting the kind does not take."""
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError("a perturbation set maps names to {kind: ..., <settings>}, as configs/robustness.yaml does")
    built = {}
    for name, entry in spec.items():
        settings = dict(entry) if isinstance(entry, Mapping) else {}
        kind = settings.pop("kind", None)
        if kind not in KINDS:
            raise ConfigError(f"perturbation {name}: kind={kind!r} is not one of {', '.join(KINDS)}")
        try:
            built[str(name)] = KINDS[kind](**settings)
        except TypeError:
            taken = ", ".join(inspect.signature(KINDS[kind]).parameters)
            raise ConfigError(
                f"perturbation {name}: a {kind} takes {taken}, not {', '.join(settings) or 'nothing'}"
            ) from None
    return built


def read_perturbations(path: str | Path | None = None) -> dict[str, Perturbation]:
    """The perturbation set of a YAML file; by default configs/robustness.yaml (shipped with the package)."""
    import yaml

    path = Path(path) if path else bundled_file(DEFAULT_SET)
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--perturbations {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--perturbations {path}: not YAML ({str(exc).splitlines()[0]})") from exc
    return perturbations(spec)


def robustness_rows(
    p_fake: dict[str, np.ndarray], labels: np.ndarray, threshold: float, applied: Mapping[str, Perturbation]
) -> list[dict]:
    """One row per condition of ``p_fake`` ("clean" first, then each perturbation's name, described by
    ``applied``): acc, precision, recall, f1, auroc, average precision, EER, and auroc_drop from clean (with the
    aliases of metrics.METRIC_ALIASES, and auc_drop, the drop's older name)."""
    keys = ("acc", "precision", "recall", "f1", "auroc", "average_precision", "eer", *METRIC_ALIASES)
    rows = []
    for name, p in p_fake.items():
        m = binary_metrics(p, labels, threshold)
        description = "none (as stored)" if name == "clean" else getattr(applied.get(name), "description", name)
        rows.append({"perturbation": name, "description": description, **{k: m[k] for k in keys}})
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
