"""The model to evaluate: an ONNX file as it is, or a checkpoint or run directory exported to a temporary ONNX file
first (with export.py's code, parity-checked), so a checkpoint and its export give the same numbers."""

from __future__ import annotations

from pathlib import Path

from deepfake.errors import ModelError
from deepfake.evaluate.splits import TrainingSplit
from deepfake.predictor import Predictor, default_model_path


def open_model(path: str | Path | None, workdir: Path, threshold: float | None = None) -> Predictor:
    """A Predictor for an ONNX file, or for a ``.ckpt`` / run directory exported into ``workdir``."""
    path = Path(path) if path else default_model_path()
    if not path.exists():
        raise ModelError(f"--model {path}: no such file or directory")
    if path.is_dir() or path.suffix == ".ckpt":
        workdir.mkdir(parents=True, exist_ok=True)
        from deepfake.export import export_checkpoint  # torch: only for checkpoints

        onnx_path = export_checkpoint(path, workdir / "model.onnx")
        return Predictor(onnx_path, threshold=threshold)
    return Predictor(path, threshold=threshold)


def open_model_and_split(
    model: str | Path | None, workdir: Path, threshold: float | None
) -> tuple[Predictor, TrainingSplit]:
    """A Predictor for ``model``, and where its training split is. Its name in tables is its run directory's
    (a run or checkpoint) or its file's stem."""
    path = Path(model) if model else default_model_path()
    predictor = open_model(path, workdir, threshold)
    run = None
    if path.is_dir() or path.suffix == ".ckpt":
        from deepfake.training.checkpoint import run_of  # torch: only for checkpoints

        run = run_of(path)
    return predictor, TrainingSplit.of(run.name if run else path.stem, run, predictor)
