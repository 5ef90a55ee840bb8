"""The images an export reads (parity checks, validation, evaluation), through the same preprocessing and face
stage as training, and the PyTorch network's outputs on them: what the ONNX file is compared with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from deepfake.errors import ImageError
from deepfake.export.options import ExportOptions
from deepfake.faces import Face, FaceStage, main_face
from deepfake.images import read_image
from deepfake.predictor import prepare
from deepfake.preprocess import Preprocess
from deepfake.samples import find_samples
from deepfake.training.checkpoint import Checkpoint

PARITY_IMAGES = 32


Item = TypeVar("Item")


def evenly(items: Sequence[Item], n: int | None) -> list[Item]:
    """At most ``n`` items spread evenly over ``items`` (all of them when ``n`` is None)."""
    if n is None or len(items) <= n:
        return list(items)
    return list(items[:: len(items) // n][:n])


EVAL_HINT = "eval_data=<dataset root> chooses other images"


def preprocessed(
    preprocess: Preprocess,
    paths: list[str],
    faces: FaceStage | None = None,
    *,
    what: str = "evaluation",
    hint: str = EVAL_HINT,
) -> np.ndarray:
    """Evaluation images through the training preprocessing (their largest face with a face stage), as one float32
    batch. An image that cannot be read stops the export with its path (:func:`_each_image`)."""
    batch = _each_image(paths, lambda rgb: preprocess(main_face(rgb, faces)), what, hint)
    return np.stack(batch).astype(np.float32)


def prepared_images(
    preprocess: Preprocess,
    paths: list[str],
    faces: FaceStage | None = None,
    *,
    what: str = "evaluation",
    hint: str = EVAL_HINT,
) -> list[tuple[list[Face] | None, np.ndarray]]:
    """Each image's faces and a model input per face, as the Predictor judges it (:func:`deepfake.predictor.prepare`);
    an image that cannot be read stops the export with its path (:func:`_each_image`)."""
    return _each_image(paths, lambda rgb: prepare(rgb, preprocess, faces), what, hint)


def _each_image(paths: list[str], make: Callable[[np.ndarray], Item], what: str, hint: str) -> list[Item]:
    """``make`` of every image, read in order. An image that cannot be read stops the export with its path: the run's
    split.csv may list files that have since moved."""
    made = []
    for path in paths:
        try:
            made.append(make(read_image(path)))
        except ImageError as exc:
            raise ImageError(f"{what} image {path}: {exc} ({hint})") from exc
    return made


def parity_inputs(
    preprocess: Preprocess, images: list[str], n_random: int = 8, seed: int = 0, faces: FaceStage | None = None
) -> np.ndarray:
    """Real images through the training preprocessing, plus uniform random pixels."""
    real = list(preprocessed(preprocess, images, faces)) if images else []
    rng = np.random.default_rng(seed)
    size = preprocess.image_size
    noise = [preprocess(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n_random)]
    return np.stack(real + noise).astype(np.float32)


def torch_p_fake(net: nn.Module, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(torch_logits(net, batch, batch_size))).numpy()


def torch_logits(net: nn.Module, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
    with torch.no_grad():
        chunks = [net(torch.from_numpy(batch[i : i + batch_size])) for i in range(0, len(batch), batch_size)]
    return torch.cat(chunks).numpy()


def eval_samples(options: ExportOptions, checkpoint: Checkpoint) -> tuple[list[str], np.ndarray, str]:
    """The evaluation set: ``eval_data`` (any layout, ``eval_split`` or all of it), else the run's test split."""
    root, split = options.eval_data, options.eval_split
    if not root:
        root, split = checkpoint.run_file("split.csv"), "test"
        if root is None:
            return [], np.zeros(0), "none"
    samples, _ = find_samples(root)
    if split:
        samples = [s for s in samples if s.split == split]
    samples = evenly(samples, options.max_eval_images)
    return [s.path for s in samples], np.array([s.label for s in samples]), f"{root}" + (f" [{split}]" if split else "")
