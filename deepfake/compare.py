"""Compare trained runs side by side: ``python compare.py <multirun dir>`` after ``python train.py -m model=a,b,c``.

For every run: its test metrics (metrics.json, best checkpoint by val AUROC), parameter count,
the size of the best checkpoint's ONNX export, and inference time per image (Predictor at
batch 1 on that export). Writes ``comparison.md``, ``comparison.json`` and ``comparison.png``.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from deepfake.curves import model_name, read_epoch_metrics
from deepfake.errors import DataError, UserError
from deepfake.export import export_checkpoint
from deepfake.images import read_image
from deepfake.predictor import Predictor
from deepfake.samples import find_samples
from deepfake.timing import median_seconds
from deepfake.training.checkpoint import load_checkpoint, resolve_checkpoint

log = logging.getLogger(__name__)

METRICS = ("auroc", "acc", "precision", "recall", "f1")
TIMING_RUNS = 50


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("metrics.json", "config.yaml", ".hydra"))


def _job_number(path: Path) -> tuple[int, str]:
    match = re.match(r"(\d+)_", path.name)
    return (int(match.group(1)) if match else 1 << 30, path.name)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories: each path that is a run itself, else the runs directly inside it (Hydra job order)."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise DataError(f"{path}: no such directory")
        if is_run(path):
            runs.append(path)
            continue
        found = sorted((p for p in path.iterdir() if is_run(p)), key=_job_number)
        if not found:
            raise DataError(f"{path} holds no training runs (folders with metrics.json, config.yaml or .hydra/)")
        runs += found
    return runs


def _timing_image(run: Path, size: int) -> np.ndarray:
    """A real test image of the run when its split.csv still points at readable files, else fixed noise."""
    split = run / "split.csv"
    if split.is_file():
        try:
            samples = [s for s in find_samples(split)[0] if s.split == "test"]
            return read_image(samples[0].path)
        except (UserError, IndexError):
            pass
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _median_ms(fn) -> float:
    return 1e3 * median_seconds(fn, runs=TIMING_RUNS, warmup=5)


def summarise_run(run: Path, workdir: Path, threads: int = 1) -> dict:
    """One row of the comparison. A run without metrics.json is reported as failed, never raised."""
    row: dict = {"run": run.name, "path": str(run), "model": model_name(run) or run.name.partition("_")[2] or run.name}
    epochs = read_epoch_metrics(run)
    row["epochs"] = sum(1 for m in epochs.values() if "train/loss" in m)
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        crashed = (run / "checkpoints" / "on_exception.ckpt").is_file()
        why = "crashed: checkpoints/on_exception.ckpt" if crashed else "crashed, interrupted or still running"
        row["status"] = f"failed: no metrics.json ({why})"
        return row
    try:
        saved = json.loads(metrics_file.read_text())
        row.update({m: float(saved[f"test/{m}"]) for m in METRICS})
        ckpt = resolve_checkpoint(run)
        checkpoint = load_checkpoint(ckpt)
    except (ValueError, KeyError, UserError) as exc:
        row["status"] = f"failed: {exc}"
        return row
    row["status"] = "ok"
    row["checkpoint"] = str(ckpt)
    row["parameters"] = sum(p.numel() for p in checkpoint.net.parameters())
    row["image_size"] = checkpoint.preprocess.image_size
    image = _timing_image(run, checkpoint.preprocess.image_size)
    onnx_path = workdir / f"{run.name}.onnx"
    try:
        export_checkpoint(ckpt, onnx_path, checkpoint=checkpoint)
    except Exception as exc:  # an architecture the exporter cannot trace: fall back to the checkpoint and eager torch
        log.warning("%s: ONNX export failed (%s); timing PyTorch", run.name, str(exc).splitlines()[0])
        import torch

        torch.set_num_threads(threads)
        with torch.inference_mode():
            row["ms_per_image"] = _median_ms(
                lambda: checkpoint.net(torch.from_numpy(checkpoint.preprocess(image))[None])
            )
        row.update(size_mb=ckpt.stat().st_size / 1e6, size_of="checkpoint", timed_with="torch eager")
        return row
    predictor = Predictor(onnx_path, providers=["CPUExecutionProvider"], threads=threads)
    row["ms_per_image"] = _median_ms(lambda: predictor.predict(image))
    row.update(size_mb=onnx_path.stat().st_size / 1e6, size_of="onnx", timed_with="onnxruntime")
    return row


def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_markdown(rows: list[dict], title: str, threads: int) -> str:
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -r["auroc"])
    failed = [r for r in rows if r["status"] != "ok"]
    lines = [
        f"# Model comparison: {title}",
        "",
        "Test split metrics from each run's metrics.json (best checkpoint by val AUROC, threshold 0.5), "
        "sorted by test AUROC. Size: the ONNX export of that checkpoint. ms/image: `Predictor.predict` on a "
        f"decoded test image (resize, normalise, onnxruntime), batch 1, {threads} CPU thread"
        f"{'s' if threads > 1 else ''}, median of {TIMING_RUNS} runs.",
        "",
        "| rank | model | run | test AUROC | accuracy | precision | recall | F1 | params | size MB | ms/image "
        "| input px | epochs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rank, r in enumerate(ok, 1):
        size = _num(r.get("size_mb"), ".2f") + ("" if r.get("size_of") == "onnx" else " (ckpt)")
        timing = _num(r.get("ms_per_image"), ".2f") + ("" if r.get("timed_with") == "onnxruntime" else " (torch)")
        lines.append(
            f"| {rank} | {r['model']} | `{r['run']}` | {r['auroc']:.4f} | {r['acc']:.4f} | {r['precision']:.4f} | "
            f"{r['recall']:.4f} | {r['f1']:.4f} | {r['parameters']:,} | {size} | {timing} | {r['image_size']} | "
            f"{r['epochs']} |"
        )
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {r['model']} (`{r['run']}`): {r['status']}" for r in failed]
    return "\n".join(lines) + "\n"


def plot_comparison(rows: list[dict], title: str, out: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -r["auroc"])
    fig = Figure(figsize=(13, 5), layout="constrained")
    bars_ax, scatter_ax = fig.subplots(1, 2, width_ratios=[1.2, 1])
    names = [r["model"] for r in ok]
    x = np.arange(len(ok))
    width = 0.8 / 3
    for i, (key, label) in enumerate((("auroc", "ROC AUC"), ("acc", "accuracy"), ("f1", "F1"))):
        bars = bars_ax.bar(x + (i - 1) * width, [r[key] for r in ok], width, label=label)
        bars_ax.bar_label(bars, fmt="%.2f", padding=1, fontsize="x-small")
    bars_ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    bars_ax.set_xticks(x, names)
    bars_ax.set_ylim(0, 1.08)
    bars_ax.set_ylabel("test split")
    bars_ax.set_title("Test metrics (sorted by ROC AUC)", fontsize="medium")
    bars_ax.legend(loc="upper right", fontsize="small", ncols=4)
    bars_ax.grid(axis="y", alpha=0.3)

    params = np.array([r["parameters"] for r in ok], float)
    sizes = 40 + 600 * np.sqrt(params / params.max()) if len(ok) else []
    scatter_ax.scatter([r["ms_per_image"] for r in ok], [r["auroc"] for r in ok], s=sizes, alpha=0.6, c="C0")
    for r in ok:
        scatter_ax.annotate(
            f"{r['model']}\n{r['parameters'] / 1e6:.2f}M params, {r['size_mb']:.1f} MB",
            (r["ms_per_image"], r["auroc"]),
            textcoords="offset points",
            xytext=(8, 6),
            fontsize="small",
        )
    scatter_ax.set_xscale("log")
    times = [r["ms_per_image"] for r in ok]
    if times:  # room on the right for the labels, which are written right of each point
        scatter_ax.set_xlim(min(times) / 2, max(times) * 5)
    scatter_ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    scatter_ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    scatter_ax.xaxis.set_minor_formatter(NullFormatter())
    scatter_ax.set_xlabel("inference time per image, ms (batch 1, log scale)")
    scatter_ax.set_ylabel("test ROC AUC")
    scatter_ax.set_title("Accuracy against speed (marker area ~ parameters)", fontsize="medium")
    scatter_ax.grid(alpha=0.3, which="both")
    scatter_ax.margins(y=0.2)
    failed = len(rows) - len(ok)
    fig.suptitle(f"Model comparison: {title}" + (f" ({failed} failed run(s) not shown)" if failed else ""))
    fig.savefig(out, dpi=100)


def compare(paths: list[str | Path], out: str | Path | None = None, threads: int = 1) -> list[dict]:
    """Measure every run under ``paths``; write comparison.md (the table), comparison.json (the rows, returned) and,
    when a run could be measured, comparison.png into ``out`` (default: the first path)."""
    runs = find_runs(paths)
    out = Path(out) if out else Path(paths[0])
    out.mkdir(parents=True, exist_ok=True)
    title = Path(paths[0]).resolve().name if len(paths) == 1 else f"{len(runs)} runs"
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for run in tqdm(runs, desc="Measuring runs", unit="run", disable=None):
            rows.append(summarise_run(run, Path(workdir), threads))
    text = format_markdown(rows, title, threads)
    (out / "comparison.md").write_text(text)
    (out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    if any(r["status"] == "ok" for r in rows):
        plot_comparison(rows, title, out / "comparison.png")
    return rows
