"""Scoring: every image decoded once and judged clean and under each perturbation, all its faces combined by the
model file's rule, as the predictor judges it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from deepfake.errors import DataError, ImageError
from deepfake.images import read_image
from deepfake.predictor import Predictor
from deepfake.robustness import Perturbation
from deepfake.samples import Sample


@dataclass
class SampleScores:
    """p_fake of every usable image under each condition ("clean" and any perturbations)."""

    paths: list[str]
    labels: np.ndarray
    p_fake: dict[str, np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def score_samples(
    predictor: Predictor,
    samples: Sequence[Sample],
    perturbations: dict[str, Perturbation] | None = None,
    *,
    batch_size: int = 64,
    progress: bool = True,
    workers: int | None = None,
) -> SampleScores:
    """Decode each image once and score it clean and under every perturbation.

    Images that fail to decode are skipped and listed in ``SampleScores.skipped``. A perturbation
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
    return SampleScores([s.path for s in kept], np.array([s.label for s in kept], np.int64), p_fake, skipped)


def file_temperature(predictor: Predictor) -> float | None:
    """The temperature a model file states it applies (export.py's calibration); None for files without one."""
    return predictor.temperature if predictor.contract.states_temperature else None
