"""Evaluate a detector on a labelled dataset: metrics, ROC curve, confusion matrix, calibration, robustness.

    python evaluate.py --model models/default.onnx --data ../shared/datasets/faces-mini --split test --out eval/

Every image is scored through the one contract, :class:`deepfake.predictor.Predictor`: all its faces,
combined by the model file's ``aggregate_faces`` rule (:mod:`deepfake.contract`). An ONNX
file is used as it is; a checkpoint or run directory is first exported to a temporary ONNX file
with :func:`deepfake.export.export` (which checks it against PyTorch), so a checkpoint and its
export give the same numbers, and any exported model can be tested on any dataset. The figures
come from :mod:`deepfake.metrics`, the perturbations from :mod:`deepfake.robustness`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
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
from deepfake.cross import format_table as format_cross_table
from deepfake.cross import plot_heatmap, write_table
from deepfake.samples import (
    SPLITS,
    Sample,
    dataset_name,
    find_manifest,
    find_samples,
    read_split,
    split_digest,
    unique_names,
)
from deepfake.errors import DataError, ImageError, ModelError
from deepfake.images import read_image
from deepfake.metrics import ECE_BINS, binary_metrics, reliability_bins, roc_curve
from deepfake.predictor import Predictor, default_model_path
from deepfake.preprocess import LABELS
from deepfake.robustness import Perturbation

SHOW_SKIPPED = 5

log = logging.getLogger(__name__)


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
        workdir.mkdir(parents=True, exist_ok=True)
        onnx_path = export_checkpoint(path, workdir / "model.onnx")
        return Predictor(onnx_path, threshold=threshold)
    return Predictor(path, threshold=threshold)


# ---------------------------------------------------------------------------
# Data and scoring


@dataclass
class TrainingSplit:
    """Where a model's training split can be found again: the split.csv of its run (exact), else the data settings
    export.py stored in its metadata (the split is made again from them and checked against their digest)."""

    model: str
    split_csv: Path | None = None
    datasets: list[dict] = field(default_factory=list)  # deepfake.datasets.DatasetSpec dicts, with layout and digest
    seed: int = 42

    @classmethod
    def of(cls, model: str, run: Path | None, predictor: Predictor) -> TrainingSplit:
        """``run``: the training run the model was given as (a run directory or checkpoint), if any."""
        split_csv = run / "split.csv" if run and (run / "split.csv").is_file() else None
        data = predictor.contract.data
        datasets = list(data.get("datasets", {}).values()) if isinstance(data, dict) else []
        if not datasets and isinstance(data, dict) and isinstance(data.get("root"), str):
            # Models exported before several datasets: one root, split by file with training's defaults.
            datasets = [{"root": data["root"], "name": dataset_name(data["root"])}]
        seed = int(data.get("seed", 42)) if isinstance(data, dict) else 42
        return cls(model, split_csv, datasets, seed)

    @functools.cached_property
    def split_rows(self) -> list[Sample]:
        """The run's split.csv, read once however many datasets ask."""
        return read_split(self.split_csv) if self.split_csv else []

    def samples(self, root: Path, name: str, split: str) -> tuple[list[Sample], str, str] | None:
        """The ``split`` of the dataset at ``root`` as this model was trained with it, the layout it was read as,
        and where it came from; None when the model was not trained on it."""
        mine = [s for s in self.split_rows if s.dataset == name or Path(s.path).is_relative_to(root)]
        if mine:
            return (
                [s for s in mine if s.split == split],
                "split.csv",
                f"{self.split_csv} ({self.model}'s training split)",
            )
        for spec in self.datasets:
            if Path(spec["root"]).expanduser().resolve() == root or spec.get("name") == name:
                return self._split_again(root, name, split, spec)
        return None

    def _split_again(self, root: Path, name: str, split: str, spec: dict) -> tuple[list[Sample], str, str]:
        samples, layout = find_samples(
            root,
            manifest=spec.get("manifest"),
            group_by=spec.get("group_by"),
            val_fraction=float(spec.get("val_fraction", 0.1)),
            test_fraction=float(spec.get("test_fraction", 0.1)),
            seed=self.seed,
            name=name,
        )
        how = f"{self.model}'s training split, made again from its metadata"
        expected = spec.get("test_files_sha256")
        if expected and split_digest(samples, root) != expected:
            log.warning(
                "%s: the test split made again from %s's settings differs from the one it was trained with "
                "(files added or removed since?): scores may include training images",
                root,
                self.model,
            )
            how += ", NOT the same files"
        return [s for s in samples if s.split == split], layout, how


def select_samples(
    root: str | Path,
    split: str | None = None,
    seed: int = 42,
    *,
    trained: Sequence[TrainingSplit] = (),
    manifest: str | None = None,
    group_by: str | None = None,
) -> tuple[list[Sample], str, str]:
    """Every labelled image of any layout data.py reads, its layout, and where its split came from.

    ``split`` keeps one split: the one a model of ``trained`` was trained with, when one was trained on this
    dataset; else the dataset's own (a pre-split tree, a manifest's split column), else the seeded 80/10/10 split
    that training makes by default, by ``group_by`` when given. A folder's manifest (metadata.csv) is read when
    ``manifest`` is not given.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"--data {root}: no such file or directory")
    path = path.resolve()
    name = dataset_name(path)
    found = None
    for model in trained if split else ():
        if (found := model.samples(path, name, split)) is not None:
            break
    if found is not None:
        samples, layout, how = found
    else:
        manifest = manifest or find_manifest(path)
        samples, layout = find_samples(path, seed=seed, manifest=manifest, group_by=group_by, name=name)
        how = "all images"
        if split:
            samples = [s for s in samples if s.split == split]
            how = f"the dataset's own {split} split" + (f" by {group_by}" if group_by else "")
    if not samples:
        raise DataError(f"--data {root}: no images" + (f" in the {split} split" if split else ""))
    return samples, layout, how


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
        # With a face stage: one input per face found; judge_all combines them by the file's rule (aggregate_faces,
        # max: the image scores its most fake face), as the predictor does.
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
        ("ECE", metrics.get("ece")),
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


def file_temperature(predictor: Predictor) -> float | None:
    """The temperature a model file states it applies (export.py's calibration); None for files without one."""
    return predictor.temperature if predictor.contract.states_temperature else None


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
    manifest: str | None = None,
    group_by: str | None = None,
) -> dict:
    """Score ``data`` with ``model``, write the report files into ``out``, print the tables. Returns metrics.json."""
    with tempfile.TemporaryDirectory() as workdir:
        predictor, trained = open_model_and_split(model, Path(workdir), threshold)
        samples, layout, how = select_samples(
            data, split, seed, trained=[trained], manifest=manifest, group_by=group_by
        )
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
        "split_from": how,
        **binary_metrics(clean, scores.labels, predictor.threshold),
        "temperature": file_temperature(predictor),
        "aggregate_faces": predictor.face_rule,
        "skipped": len(scores.skipped),
        "skipped_files": [{"path": p, "reason": r} for p, r in scores.skipped],
    }
    where = f"{Path(data).name}" + (f" [{split}]" if split else " [all]")
    title = f"{predictor.model_name} on {where}, {metrics['n_images']} images"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_roc(clean, scores.labels, metrics, f"ROC: {title}", out / "roc.png")
    plot_confusion(metrics, f"Confusion matrix: {title}", out / "confusion_matrix.png")
    temperature = metrics["temperature"]
    plot_calibration(clean, scores.labels, metrics, f"Calibration: {title}", temperature, out / "calibration.png")
    calibrated = "" if temperature is None else f", temperature {temperature:g}"
    print(f"model  {metrics['model']} ({predictor.model_name}, threshold {predictor.threshold:g}{calibrated})")
    print(
        f"data   {data} ({layout} layout, {how}): {metrics['n_images']} images "
        f"({metrics['n_real']} real, {metrics['n_fake']} fake), {metrics['skipped']} skipped\n"
    )
    print(format_table(metrics))
    if robustness:
        rows = rb.robustness_rows(scores.p_fake, scores.labels, predictor.threshold)
        rb.write_robustness(rows, out, title)
        print("\nrobustness (perturbation applied to the decoded image before the model's preprocessing)")
        print(rb.format_markdown(rows))
    written = ["metrics.json", "roc.png", "confusion_matrix.png", "calibration.png"]
    written += ["robustness.json", "robustness.md", "robustness.png"] if robustness else []
    print(f"\nwrote {', '.join(written)} to {out}")
    return metrics


def open_model_and_split(
    model: str | Path | None, workdir: Path, threshold: float | None
) -> tuple[Predictor, TrainingSplit]:
    """A Predictor for ``model``, and where its training split is. Its name in tables is its run directory's
    (a run or checkpoint) or its file's stem."""
    path = Path(model) if model else default_model_path()
    predictor = open_model(path, workdir, threshold)
    run = None
    if path.is_dir() or path.suffix == ".ckpt":
        from deepfake.training import run_of  # Lightning and Hydra: only for checkpoints

        run = run_of(path)
    return predictor, TrainingSplit.of(run.name if run else path.stem, run, predictor)


def cross_evaluate(
    models: Sequence[str | Path | None],
    datas: Sequence[str | Path],
    out: str | Path,
    *,
    split: str | None = None,
    threshold: float | None = None,
    seed: int = 42,
    batch_size: int = 64,
    progress: bool = True,
    manifest: str | None = None,
    group_by: str | None = None,
) -> dict:
    """Score every model on every dataset; write cross_dataset.csv, cross_dataset.png and cross_dataset.json.

    Every model sees the same images of a dataset: with ``split``, the split of the first model trained on that
    dataset (its run's split.csv, or its metadata), so the diagonal is each model's own held-out test set and
    the other cells are images no model of the table trained on... unless two models trained on one dataset
    with different splits, which the printout shows.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory() as workdir:
        opened = [open_model_and_split(m, Path(workdir) / str(i), threshold) for i, m in enumerate(models)]
        model_names = unique_names([trained.model for _, trained in opened])
        data_names = unique_names([dataset_name(d) for d in datas])
        cells: dict[tuple[str, str], dict] = {}
        splits: dict[str, dict] = {}
        for data, data_name in zip(datas, data_names, strict=True):
            samples, layout, how = select_samples(
                data, split, seed, trained=[t for _, t in opened], manifest=manifest, group_by=group_by
            )
            n_fake = sum(s.label for s in samples)
            print(f"{data_name}: {len(samples)} images ({len(samples) - n_fake} real, {n_fake} fake) from {how}")
            splits[data_name] = {"data": str(data), "layout": layout, "split": split, "split_from": how}
            for (predictor, _), model_name in zip(opened, model_names, strict=True):
                scores = score(predictor, samples, batch_size=batch_size, progress=progress)
                report_skipped(scores.skipped)
                metrics = binary_metrics(scores.p_fake["clean"], scores.labels, predictor.threshold)
                cells[model_name, data_name] = {**metrics, "skipped": len(scores.skipped)}
        models_info = {
            name: {"model": str(m or predictor.path), "model_name": predictor.model_name}
            for name, m, (predictor, _) in zip(model_names, models, opened, strict=True)
        }
    out.mkdir(parents=True, exist_ok=True)
    write_table(cells, model_names, data_names, out / "cross_dataset.csv")
    plot_heatmap(
        cells, model_names, data_names, out / "cross_dataset.png", f"ROC AUC, {split or 'all'} images of each dataset"
    )
    result = {
        "models": models_info,
        "datasets": splits,
        "cells": {m: {d: cells[m, d] for d in data_names} for m in model_names},
    }
    (out / "cross_dataset.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\nROC AUC (rows: models, columns: datasets)\n")
    print(format_cross_table(cells, model_names, data_names))
    print(f"\nwrote cross_dataset.csv, cross_dataset.png, cross_dataset.json to {out}")
    return result


# ---------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Evaluate a real/fake detector on a labelled dataset: accuracy, precision, recall, F1, ROC AUC,\n"
            "average precision, EER, expected calibration error (ECE), confusion matrix and per-class report;\n"
            "with --robustness, the same under JPEG, blur, downscaling and noise. Prints the tables and writes\n"
            "metrics.json, roc.png, confusion_matrix.png and calibration.png (the reliability diagram), and with\n"
            "--robustness robustness.json, robustness.md and robustness.png, into --out.\n\n"
            "With several --model or --data: every model on every dataset, the way DeepfakeBench reports\n"
            "detectors. Writes cross_dataset.csv (rows: models; columns: each dataset's ROC AUC, then its\n"
            "accuracy and EER), cross_dataset.png (the AUROC heatmap) and cross_dataset.json (every figure)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python evaluate.py --model models/default.onnx --data ../shared/datasets/faces-mini --split test "
            "--out eval/\n"
            "  python evaluate.py --model runs/cnn/<run>/checkpoints/last.ckpt --data /data/Dataset --out eval/\n"
            "  python evaluate.py --model model.onnx --data other_dataset/ --out robust/ --robustness\n"
            "  python evaluate.py --model runs/faces_only --model runs/dfdc_only \\\n"
            "      --data ../shared/datasets/faces-mini --data ../shared/datasets/dfdc-mini \\\n"
            "      --split test --out cross/\n\n"
            "--data takes any layout train.py reads: Real/ and Fake/ folders, a Train/Validation/Test tree, or\n"
            "a CSV manifest file,label[,split]; a folder's metadata.csv (or manifest.csv) is read as its manifest.\n"
            "Without --split every image is used. --split test takes the test split a model was trained with:\n"
            "from its run's split.csv (a run directory or checkpoint), else made again from the data settings its\n"
            "ONNX metadata records and checked against their digest; a dataset no model trained on is split as\n"
            "training would split it (--seed, --group-by). In a cross table every model sees the same images.\n"
            "A checkpoint or run directory is exported to a temporary ONNX file first, so it is scored exactly\n"
            "as its export would be. Exit code 2 when the model, data or an option is unusable."
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        help="ONNX file from export.py, .ckpt from train.py, or a run directory; repeat for a cross-dataset "
        f"table (default: {default_model_path()})",
    )
    parser.add_argument(
        "--data", action="append", required=True, help="dataset root, folder or CSV manifest; repeat for a table"
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="only this split: the one the model was trained with when it was trained on the dataset (default: all)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the results and the pictures")
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="also score under JPEG quality 90/70/50, Gaussian blur sigma 1/2, downscale by half and back, "
        f"and Gaussian noise (sigma {rb.NOISE_SIGMA:g} on 0-255); one --model and one --data only",
    )
    add_scoring_options(parser, batch_size=64)
    parser.add_argument("--manifest", default=None, help="manifest file in each --data folder (default: metadata.csv)")
    parser.add_argument(
        "--group-by",
        default=None,
        help="manifest column to split by, for data no model was trained on (as train.py's data.group_by)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the split of a plain folder (training's: 42)")
    args = parser.parse_args(argv)
    args.model = args.model or [None]
    if args.robustness and (len(args.model) > 1 or len(args.data) > 1):
        parser.error("--robustness takes one --model and one --data")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = dict(
        split=args.split,
        threshold=args.threshold,
        seed=args.seed,
        batch_size=args.batch_size,
        manifest=args.manifest,
        group_by=args.group_by,
    )

    def work() -> None:
        if len(args.model) == 1 and len(args.data) == 1:
            evaluate(args.model[0], args.data[0], args.out, robustness=args.robustness, **options)
        else:
            cross_evaluate(args.model, args.data, args.out, **options)

    return run_command(work)


if __name__ == "__main__":  # python -m deepfake.evaluate
    sys.exit(main())
