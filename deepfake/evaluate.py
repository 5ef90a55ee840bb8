"""Evaluate a detector on a labelled dataset: metrics, ROC curve, confusion matrix, robustness.

    python evaluate.py --model models/default.onnx --data ../shared/datasets/faces-mini --split test --out eval/

Every image is scored through the one contract, :class:`deepfake.predictor.Predictor`. An ONNX
file is used as it is; a checkpoint or run directory is first exported to a temporary ONNX file
with :func:`deepfake.export.export` (which checks it against PyTorch), so a checkpoint and its
export give the same numbers, and any exported model can be tested on any dataset. The figures
come from :mod:`deepfake.metrics`, the perturbations from :mod:`deepfake.robustness`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfake import robustness as rb
from deepfake.cli import add_scoring_options, run_command
from deepfake.data import SPLITS, Sample, find_samples
from deepfake.errors import DataError, ImageError, ModelError
from deepfake.images import read_image
from deepfake.metrics import binary_metrics, roc_curve
from deepfake.predictor import Predictor, default_model_path
from deepfake.preprocess import LABELS
from deepfake.robustness import Perturbation

SHOW_SKIPPED = 5


# ---------------------------------------------------------------------------
# The model: an ONNX file, or a checkpoint exported to one


def export_checkpoint(ckpt: str | Path, out: Path, checkpoint=None) -> Path:
    """Export a checkpoint or run directory to ``out`` with export.py's code and defaults (parity-checked);
    ``checkpoint``: the checkpoint already loaded (deepfake.training.load_checkpoint), if the caller has it."""
    from deepfake.export import export

    # export() narrates on stdout; keep stdout for this command's own results.
    with contextlib.redirect_stdout(sys.stderr):
        export(ckpt=str(ckpt), out=str(out), checkpoint=checkpoint)
    return out


def open_model(path: str | Path | None, workdir: Path, threshold: float | None = None) -> Predictor:
    """A Predictor for an ONNX file, or for a ``.ckpt`` / run directory exported into ``workdir``."""
    path = Path(path) if path else default_model_path()
    if not path.exists():
        raise ModelError(f"--model {path}: no such file or directory")
    if path.is_dir() or path.suffix == ".ckpt":
        onnx_path = export_checkpoint(path, workdir / "model.onnx")
        return Predictor(onnx_path, threshold=threshold)
    return Predictor(path, threshold=threshold)


# ---------------------------------------------------------------------------
# Data and scoring


def select_samples(root: str | Path, split: str | None = None, seed: int = 42) -> tuple[list[Sample], str]:
    """Every labelled image of any layout data.py reads; ``split`` keeps one split (for a plain
    Real/Fake folder: the seeded 80/10/10 split that training made with the same seed)."""
    if not Path(root).expanduser().exists():
        raise DataError(f"--data {root}: no such file or directory")
    samples, layout = find_samples(root, seed=seed)
    if split:
        samples = [s for s in samples if s.split == split]
    if not samples:
        raise DataError(f"--data {root}: no images" + (f" in the {split} split" if split else ""))
    return samples, layout


@dataclass
class Scores:
    """p_fake of every usable image under each condition ("clean" and any perturbations)."""

    paths: list[str]
    labels: np.ndarray
    p_fake: dict[str, np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def score(
    predictor: Predictor,
    samples: Sequence[Sample],
    perturbations: dict[str, Perturbation] | None = None,
    *,
    batch_size: int = 64,
    progress: bool = True,
    workers: int | None = None,
) -> Scores:
    """Decode each image once and score it clean and under every perturbation.

    Images that fail to decode are skipped and listed in ``Scores.skipped``. A perturbation
    acts on the decoded full-size RGB image, before the face stage and the model's own resize;
    its generator is seeded from the image's index, so results depend neither on batching nor
    on threads. Decoding and preprocessing run in ``workers`` threads (OpenCV releases the GIL),
    one batch at a time, so memory stays at one batch of decoded images.
    """
    from tqdm.auto import tqdm

    conditions: dict[str, Perturbation | None] = {"clean": None, **(perturbations or {})}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in conditions}
    kept: list[Sample] = []
    skipped: list[tuple[str, str]] = []

    def decode(sample: Sample) -> np.ndarray | str:
        try:
            return read_image(sample.path)
        except ImageError as exc:
            return str(exc)

    def model_inputs(perturb: Perturbation | None, index: int, rgb: np.ndarray):
        # With a face stage: one input per face found (the image scores its most fake face), as in the predictor.
        return predictor.inputs(rgb if perturb is None else perturb(rgb, np.random.default_rng(index)))

    workers = workers or min(8, os.cpu_count() or 1)
    bar = tqdm(total=len(samples), desc="Scoring", unit="img", disable=not progress or None, leave=False)
    with ThreadPoolExecutor(workers) as pool, bar:
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            decoded = []
            for index, (sample, rgb) in enumerate(zip(batch, pool.map(decode, batch), strict=True), start):
                if isinstance(rgb, str):
                    skipped.append((sample.path, rgb))
                else:
                    kept.append(sample)
                    decoded.append((index, rgb))
            for name, perturb in conditions.items():
                if decoded:
                    prepared = list(pool.map(lambda item, p=perturb: model_inputs(p, *item), decoded))
                    chunks[name].append(np.array([v.p_fake for v in predictor.judge_all(prepared, batch_size)]))
            bar.update(len(batch))
    if not kept:
        raise DataError(f"none of the {len(samples)} images could be decoded (first: {skipped[0][0]}: {skipped[0][1]})")
    p_fake = {name: np.concatenate(parts) for name, parts in chunks.items()}
    return Scores([s.path for s in kept], np.array([s.label for s in kept], np.int64), p_fake, skipped)


# ---------------------------------------------------------------------------
# Report: table, metrics.json, pictures


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_table(metrics: dict) -> str:
    rows = [
        ("accuracy", metrics["acc"]),
        ("precision (fake)", metrics["precision"]),
        ("recall (fake)", metrics["recall"]),
        ("F1 (fake)", metrics["f1"]),
        ("ROC AUC", metrics["auroc"]),
        ("average precision", metrics["average_precision"]),
        ("EER", metrics["eer"]),
        ("EER threshold", metrics["eer_threshold"]),
    ]
    lines = [f"{'metric':<20}{'value':>8}", *(f"{name:<20}{_fmt(v):>8}" for name, v in rows)]
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]["matrix"]
    lines += [
        "",
        f"confusion matrix at threshold {metrics['threshold']:g} (rows: true, columns: predicted)",
        f"{'':<10}{'real':>8}{'fake':>8}",
        f"{'real':<10}{tn:>8}{fp:>8}",
        f"{'fake':<10}{fn:>8}{tp:>8}",
        "",
        f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for name, row in metrics["classification_report"].items():
        lines.append(f"{name:<14}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}{row['support']:>10}")
    return "\n".join(lines)


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


def report_skipped(skipped: list[tuple[str, str]]) -> None:
    if not skipped:
        return
    print(f"warning: skipped {len(skipped)} image(s) that could not be decoded:", file=sys.stderr)
    for path, reason in skipped[:SHOW_SKIPPED]:
        print(f"  {path}: {reason}", file=sys.stderr)
    if len(skipped) > SHOW_SKIPPED:
        print(f"  ... and {len(skipped) - SHOW_SKIPPED} more (all in metrics.json)", file=sys.stderr)


def evaluate(
    model: str | Path | None,
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    robustness: bool = False,
    threshold: float | None = None,
    seed: int = 42,
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Score ``data`` with ``model``, write the report files into ``out``, print the tables. Returns metrics.json."""
    samples, layout = select_samples(data, split, seed)
    with tempfile.TemporaryDirectory() as workdir:
        predictor = open_model(model, Path(workdir), threshold)
        scores = score(
            predictor, samples, rb.PERTURBATIONS if robustness else None, batch_size=batch_size, progress=progress
        )
    report_skipped(scores.skipped)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean = scores.p_fake["clean"]
    metrics = {
        "model": str(model or predictor.path),
        "model_name": predictor.model_name,
        "data": str(data),
        "layout": layout,
        "split": split,
        **binary_metrics(clean, scores.labels, predictor.threshold),
        "skipped": len(scores.skipped),
        "skipped_files": [{"path": p, "reason": r} for p, r in scores.skipped],
    }
    where = f"{Path(data).name}" + (f" [{split}]" if split else " [all]")
    title = f"{predictor.model_name} on {where}, {metrics['n_images']} images"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_roc(clean, scores.labels, metrics, f"ROC: {title}", out / "roc.png")
    plot_confusion(metrics, f"Confusion matrix: {title}", out / "confusion_matrix.png")
    print(f"model  {metrics['model']} ({predictor.model_name}, threshold {predictor.threshold:g})")
    print(
        f"data   {data} ({layout} layout, split {split or 'all'}): {metrics['n_images']} images "
        f"({metrics['n_real']} real, {metrics['n_fake']} fake), {metrics['skipped']} skipped\n"
    )
    print(format_table(metrics))
    if robustness:
        rows = rb.robustness_rows(scores.p_fake, scores.labels, predictor.threshold)
        rb.write_robustness(rows, out, title)
        print("\nrobustness (perturbation applied to the decoded image before the model's preprocessing)")
        print(rb.format_markdown(rows))
    written = ["metrics.json", "roc.png", "confusion_matrix.png"]
    written += ["robustness.json", "robustness.md", "robustness.png"] if robustness else []
    print(f"\nwrote {', '.join(written)} to {out}")
    return metrics


# ---------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Evaluate a real/fake detector on a labelled dataset: accuracy, precision, recall, F1, ROC AUC,\n"
            "average precision, EER, confusion matrix and per-class report; with --robustness, the same under\n"
            "JPEG, blur, downscaling and noise. Prints the tables and writes metrics.json, roc.png and\n"
            "confusion_matrix.png (and robustness.json, robustness.md, robustness.png) into --out."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python evaluate.py --model models/default.onnx --data ../shared/datasets/faces-mini --split test "
            "--out eval/\n"
            "  python evaluate.py --model runs/cnn/<run>/checkpoints/last.ckpt --data /data/Dataset --out eval/\n"
            "  python evaluate.py --model model.onnx --data other_dataset/ --out cross/ --robustness\n\n"
            "--data takes any layout train.py reads: Real/ and Fake/ folders, a Train/Validation/Test tree, or\n"
            "a CSV manifest path,label[,split]. Without --split every image is used (cross-dataset evaluation).\n"
            "A checkpoint or run directory is exported to a temporary ONNX file first, so it is scored exactly\n"
            "as its export would be. Exit code 2 when the model, data or an option is unusable."
        ),
    )
    parser.add_argument(
        "--model",
        default=None,
        help=f"ONNX file from export.py, .ckpt from train.py, or a run directory (default: {default_model_path()})",
    )
    parser.add_argument("--data", required=True, help="dataset root: folder or CSV manifest")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="only this split; for a plain Real/Fake folder, the seeded 80/10/10 split training made (default: all)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics.json and the pictures")
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="also score under JPEG quality 90/70/50, Gaussian blur sigma 1/2, downscale by half and back, "
        f"and Gaussian noise (sigma {rb.NOISE_SIGMA:g} on 0-255)",
    )
    add_scoring_options(parser, batch_size=64)
    parser.add_argument("--seed", type=int, default=42, help="seed of the split of a plain folder (training's: 42)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        evaluate(
            args.model,
            args.data,
            args.out,
            split=args.split,
            robustness=args.robustness,
            threshold=args.threshold,
            seed=args.seed,
            batch_size=args.batch_size,
        )

    return run_command(work)


if __name__ == "__main__":  # python -m deepfake.evaluate
    sys.exit(main())
