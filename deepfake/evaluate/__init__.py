"""Evaluate a detector on a labelled dataset: metrics, ROC curve, confusion matrix, calibration, robustness.

    python evaluate.py --model models/default.onnx --data ../shared/datasets/faces-mini --split test --out eval/

The flow (:func:`evaluate`; :func:`cross_evaluate` for every model on every dataset), a module a step:

1. :mod:`.models`: the model as a :class:`deepfake.predictor.Predictor`, the one contract: an ONNX file as it is,
   a checkpoint or run directory exported to a temporary ONNX file first (:func:`deepfake.export.export_checkpoint`,
   which checks it against PyTorch), so a checkpoint and its export give the same numbers.
2. :mod:`.splits`: the images, as the model was trained with them when it was (its run's split.csv, else its
   metadata's data settings), else the dataset's own split or training's default one.
3. :mod:`.scoring`: every image decoded once, judged clean and under each perturbation
   (:mod:`deepfake.robustness`), all its faces combined by the file's ``aggregate_faces`` rule.
4. The figures (:mod:`deepfake.metrics`) go to metrics.json, :mod:`.plots` draws the pictures, and
   :mod:`.tables` makes the text the command prints.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepfake import robustness as rb
from deepfake.cross import plot_heatmap, write_table
from deepfake.evaluate.models import open_model, open_model_and_split
from deepfake.evaluate.plots import plot_calibration, plot_confusion, plot_roc
from deepfake.evaluate.scoring import SampleScores, file_temperature, score_samples
from deepfake.evaluate.splits import TrainingSplit, select_samples
from deepfake.metrics import binary_metrics
from deepfake.samples import SPLIT, dataset_name, unique_names

__all__ = [
    "Evaluation",
    "SampleScores",
    "TrainingSplit",
    "cross_evaluate",
    "evaluate",
    "open_model",
    "score_samples",
    "select_samples",
]


@dataclass
class Evaluation:
    """What :func:`evaluate` found and wrote: ``metrics`` is metrics.json; ``robustness`` the rows of
    robustness.json (None without ``robustness=True``); ``written`` the file names in ``out``."""

    metrics: dict
    robustness: list[dict] | None
    out: Path
    written: list[str]


def evaluate(
    model: str | Path | None,
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    robustness: bool | Mapping[str, rb.Perturbation] = False,
    threshold: float | None = None,
    seed: int = SPLIT.seed,
    batch_size: int = 64,
    progress: bool = True,
    manifest: str | None = None,
    group_by: str | None = None,
) -> Evaluation:
    """Score ``data`` with ``model`` and write metrics.json and the pictures into ``out``; with ``robustness``
    (True: configs/robustness.yaml's set; or a set of :mod:`deepfake.robustness` perturbations by name), score
    it under each perturbation too and write the robustness files."""
    applied = (rb.read_perturbations() if robustness is True else dict(robustness)) if robustness else None
    with tempfile.TemporaryDirectory() as workdir:
        predictor, trained = open_model_and_split(model, Path(workdir), threshold)
        samples, layout, how = select_samples(
            data, split, seed, trained=[trained], manifest=manifest, group_by=group_by
        )
        scores = score_samples(predictor, samples, applied, batch_size=batch_size, progress=progress)
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
    written = ["metrics.json", "roc.png", "confusion_matrix.png", "calibration.png"]
    rows = None
    if applied:
        rows = rb.robustness_rows(scores.p_fake, scores.labels, predictor.threshold, applied)
        rb.write_robustness(rows, out, title)
        written += ["robustness.json", "robustness.md", "robustness.png"]
    return Evaluation(metrics, rows, out, written)


def cross_evaluate(
    models: Sequence[str | Path | None],
    datas: Sequence[str | Path],
    out: str | Path,
    *,
    split: str | None = None,
    threshold: float | None = None,
    seed: int = SPLIT.seed,
    batch_size: int = 64,
    progress: bool = True,
    manifest: str | None = None,
    group_by: str | None = None,
) -> dict:
    """Score every model on every dataset; write cross_dataset.csv, cross_dataset.png and cross_dataset.json
    (what this returns).

    Every model sees the same images of a dataset: with ``split``, the split of the first model trained on that
    dataset (its run's split.csv, or its metadata), so the diagonal is each model's own held-out test set and
    the other cells are images no model of the table trained on... unless two models trained on one dataset
    with different splits, which the ``split_from`` of each dataset shows.
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
            splits[data_name] = {
                "data": str(data),
                "layout": layout,
                "split": split,
                "split_from": how,
                "n_images": len(samples),
                "n_fake": sum(s.label for s in samples),
            }
            for (predictor, _), model_name in zip(opened, model_names, strict=True):
                scores = score_samples(predictor, samples, batch_size=batch_size, progress=progress)
                metrics = binary_metrics(scores.p_fake["clean"], scores.labels, predictor.threshold)
                cells[model_name, data_name] = {
                    **metrics,
                    "skipped": len(scores.skipped),
                    "skipped_files": [{"path": p, "reason": r} for p, r in scores.skipped],
                }
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
    return result
