"""Run an exported detector with onnxruntime: no torch, nothing hard-coded.

    from deepfake.predictor import Predictor
    verdict = Predictor("model.onnx").predict("face.jpg")   # Prediction(label='fake', p_fake=0.97, ...)

Every preprocessing value (input size, colour order, scaling, mean/std, labels,
threshold) comes from the model file's metadata, written by export.py from the
same :class:`~deepfake.preprocess.Preprocess` that training used. This module imports
numpy, OpenCV and onnxruntime only, so other apps can embed it without torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from deepfake import bundled_file
from deepfake.errors import ModelError, UserError
from deepfake.images import to_rgb
from deepfake.preprocess import LABELS, POSITIVE_CLASS, check_threshold, parse_contract

# Attention-head models carry their spatial mask as this extra output; metadata key ATTENTION_KEY names it.
ATTENTION_NAME, ATTENTION_KEY = "attention", "attention_output"

# The bundled model; DEEPFAKE_MODEL points elsewhere without code changes.
DEFAULT_MODEL = bundled_file("models/default.onnx")


def default_model_path() -> Path:
    return Path(os.environ.get("DEEPFAKE_MODEL") or DEFAULT_MODEL)


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu can use it, else CPU."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


@dataclass(frozen=True)
class Prediction:
    label: str  # "real" or "fake"
    p_fake: float  # probability of "fake"
    confidence: float  # probability of the predicted label

    def to_dict(self) -> dict:
        return asdict(self)


def verdict(p_fake: float, threshold: float, labels=LABELS, positive: str = POSITIVE_CLASS) -> Prediction:
    """The label ``p_fake`` reads as (the positive class at or above ``threshold``) and its confidence."""
    p = float(p_fake)
    negative = next(label for label in labels if label != positive)
    fake = p >= threshold
    return Prediction(positive if fake else negative, p, p if fake else 1.0 - p)


class Predictor:
    """A loaded model file. Safe to share between threads: onnxruntime sessions are, and nothing else mutates."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        threshold: float | None = None,
        providers: Sequence[str] | None = None,
        threads: int = 0,
    ):
        self.path = Path(path) if path else default_model_path()
        if not self.path.is_file():
            hint = " (the bundled model is missing: pass a model file from export.py)" if path is None else ""
            raise ModelError(f"model file {self.path}: no such file{hint}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime picks (one per physical core)
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or default_providers())
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"model file {self.path} cannot be loaded by onnxruntime: {reason}") from exc
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        contract = parse_contract(self.metadata)
        self.preprocess = contract.preprocess
        self.labels = contract.labels
        self.positive_class = contract.positive_class
        self.input_name, self.output_name = contract.input_name, contract.output_name
        self.threshold = contract.threshold if threshold is None else check_threshold(threshold)
        self.model_name = self.metadata.get("model_name", self.path.stem)
        self.attention_name = self.metadata.get(ATTENTION_KEY) or None
        if self.attention_name and self.attention_name not in {o.name for o in self.session.get_outputs()}:
            raise ModelError(
                f"model file {self.path}: its metadata names an attention output {self.attention_name!r} "
                "that the graph lacks; re-export it with export.py"
            )

    def __repr__(self) -> str:
        return f"Predictor({str(self.path)!r}, model={self.model_name!r}, threshold={self.threshold})"

    def model_input(self, image) -> np.ndarray:
        """One image (path, bytes, RGB array or PIL image) -> float32 (3, S, S), preprocessed as the file says."""
        return self.preprocess(to_rgb(image))

    def _run(self, outputs: list[str], batch: np.ndarray, batch_size: int) -> list[np.ndarray]:
        chunks = [
            self.session.run(outputs, {self.input_name: batch[i : i + batch_size]})
            for i in range(0, len(batch), batch_size)
        ]
        return [np.concatenate([chunk[k] for chunk in chunks]) for k in range(len(outputs))]

    def p_fake(self, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities of the positive class for prepared inputs (N, 3, S, S), run ``batch_size`` at a time."""
        return self._run([self.output_name], batch, batch_size)[0].reshape(-1)

    @property
    def has_attention(self) -> bool:
        """Whether the file has an attention-head model's mask as an output (export.py adds it)."""
        return self.attention_name is not None

    def p_fake_with_attention(self, batch: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """p_fake (N,) and the attention masks (N, h, w) in [0, 1] at feature resolution, in one run."""
        if not self.has_attention:
            raise UserError(f"model {self.model_name} ({self.path.name}) has no attention output")
        p, mask = self._run([self.output_name, self.attention_name], batch, batch_size)
        return p.reshape(-1), mask.reshape(len(batch), *mask.shape[-2:])

    def verdict(self, p: float) -> Prediction:
        return verdict(p, self.threshold, self.labels, self.positive_class)

    def predict(self, image) -> Prediction:
        return self.verdict(self.p_fake(self.model_input(image)[None])[0])

    def predict_batch(self, images: Iterable, batch_size: int = 64) -> list[Prediction]:
        """Predictions in input order. Raises ImageError on the first image that cannot be used."""
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size} must be at least 1")
        inputs = [self.model_input(image) for image in images]
        out: list[Prediction] = []
        for start in range(0, len(inputs), batch_size):
            probs = self.p_fake(np.stack(inputs[start : start + batch_size]))
            out += [self.verdict(p) for p in probs]
        return out
