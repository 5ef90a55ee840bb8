"""The text an evaluation prints: its metrics table and the files it skipped."""

from __future__ import annotations

from pathlib import Path

from deepfake.cross import format_table as format_cross_table
from deepfake.robustness import format_markdown

SHOW_SKIPPED = 5


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


def format_skipped(skipped: list[tuple[str, str]]) -> str:
    """The warning about images that could not be decoded (the first few; metrics.json lists all), or ""."""
    if not skipped:
        return ""
    lines = [f"warning: skipped {len(skipped)} image(s) that could not be decoded:"]
    lines += [f"  {path}: {reason}" for path, reason in skipped[:SHOW_SKIPPED]]
    if len(skipped) > SHOW_SKIPPED:
        lines.append(f"  ... and {len(skipped) - SHOW_SKIPPED} more (all in metrics.json)")
    return "\n".join(lines)


def format_evaluation(metrics: dict, out: Path, written: list[str], robustness: list[dict] | None = None) -> str:
    """What evaluate.py prints for one model on one dataset (``robustness``: the rows of --robustness)."""
    temperature = metrics["temperature"]
    calibrated = "" if temperature is None else f", temperature {temperature:g}"
    lines = [
        f"model  {metrics['model']} ({metrics['model_name']}, threshold {metrics['threshold']:g}{calibrated})",
        f"data   {metrics['data']} ({metrics['layout']} layout, {metrics['split_from']}): {metrics['n_images']} images "
        f"({metrics['n_real']} real, {metrics['n_fake']} fake), {metrics['skipped']} skipped",
        "",
        format_table(metrics),
    ]
    if robustness is not None:
        lines += ["", "robustness (perturbation applied to the decoded image before the model's preprocessing)"]
        lines.append(format_markdown(robustness))
    lines += ["", f"wrote {', '.join(written)} to {out}"]
    return "\n".join(lines)


def format_cross_evaluation(result: dict, out: Path) -> str:
    """What evaluate.py prints for several models or datasets: each dataset's images, then the AUROC table."""
    lines = [
        f"{name}: {d['n_images']} images ({d['n_images'] - d['n_fake']} real, {d['n_fake']} fake) "
        f"from {d['split_from']}"
        for name, d in result["datasets"].items()
    ]
    cells = {(m, d): cell for m, row in result["cells"].items() for d, cell in row.items()}
    lines += ["", "ROC AUC (rows: models, columns: datasets)", ""]
    lines.append(format_cross_table(cells, list(result["models"]), list(result["datasets"])))
    lines += ["", f"wrote cross_dataset.csv, cross_dataset.png, cross_dataset.json to {out}"]
    return "\n".join(lines)
