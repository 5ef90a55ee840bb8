"""From the samples of one or more datasets (:mod:`deepfake.samples`) to batches of tensors for Lightning.

Every item is ``(image, label, dataset index)``: the index lets training report test metrics per dataset,
and ``data.balance=dataset`` draws each dataset equally often however many images it has. With
``data.faces=blazeface`` (or ``dlib``) every image is replaced by the crop of its largest face, cut once by
:mod:`deepfake.faces.dataset` (cached on disk) exactly as the predictor will cut it.

With ``data.pseudo_fakes=sbi``, real training faces also yield self-blended pseudo-fakes (:mod:`deepfake.sbi`):
an item is then a pair, the real face and its blend, augmented identically, so that the blend is the only
difference between them. A split without fakes (a folder of real faces only) gets fixed, seeded pairs.

The module is built from the ``data`` settings (:class:`deepfake.data.config.DataConfig`) and the run's seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm

from deepfake.data.augment import build_augment, build_surroundings
from deepfake.data.config import BALANCE, NO_FACE, PSEUDO_FAKES, DataConfig, data_settings, face_stage
from deepfake.data.dataset import ImageDataset, collate_skip_bad, init_worker
from deepfake.data.pairs import PseudoFakes, blender
from deepfake.errors import ConfigError, DataError
from deepfake.faces.dataset import crop_dataset
from deepfake.faces.landmarks import landmark_dataset
from deepfake.images import check_image_file
from deepfake.preprocess import LABELS, Preprocess
from deepfake.samples import SPLITS, DatasetSpec, Sample, collect_samples, dataset_specs, split_digest

log = logging.getLogger(__name__)


def drop_bad_files(samples: Sequence[Sample], *, workers: int = 16) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Split samples into usable ones and (path, reason) for unreadable, non-image or oversized files.

    Reads only each file's header and last kilobyte, in threads, so it stays quick on
    large datasets; anything that still fails to decode later is dropped from its batch.
    """
    paths = [s.path for s in samples]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(
            tqdm(
                pool.map(check_image_file, paths, chunksize=256),
                total=len(paths),
                desc="Checking images",
                disable=len(paths) < 5000,
                leave=False,
            )
        )
    good = [s for s, p in zip(samples, problems, strict=True) if p is None]
    bad = [(s.path, p) for s, p in zip(samples, problems, strict=True) if p is not None]
    return good, bad


def resolve_num_workers(value) -> int:
    if value in (None, "auto"):
        return min(8, os.cpu_count() or 1)
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < 0:
        raise DataError(f"data.num_workers={value!r} must be a non-negative integer or 'auto'")
    return n


class DeepfakeDataModule(L.LightningDataModule):
    """Batches of one or more datasets for Lightning, built from the ``data`` settings (a :class:`DataConfig`, or the
    composed ``data`` node) and the run's seed. ``preprocess`` (the model's input contract) is needed from
    :meth:`setup` on; training sets it once the network is built.

    ``data.root`` is one dataset, or a list (see :func:`deepfake.samples.dataset_specs`).
    """

    def __init__(
        self, data: DataConfig | DictConfig | Mapping, preprocess: Preprocess | None = None, *, seed: int
    ) -> None:
        super().__init__()
        self.settings = cfg = data_settings(data)
        if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
            raise DataError(f"data.batch_size={cfg.batch_size!r} must be a positive integer")
        if cfg.no_face not in NO_FACE:
            raise ConfigError(f"data.no_face={cfg.no_face} must be one of {', '.join(NO_FACE)}")
        if cfg.balance not in BALANCE:
            raise ConfigError(f"data.balance={cfg.balance} must be one of {', '.join(BALANCE)}")
        self.faces = face_stage(cfg)
        if self.faces is not None and not cfg.face_cache:
            raise ConfigError("data.face_cache needs a folder for the face crops when data.faces is on")
        if cfg.pseudo_fakes not in PSEUDO_FAKES:
            raise ConfigError(f"data.pseudo_fakes={cfg.pseudo_fakes} must be one of {', '.join(PSEUDO_FAKES)}")
        ratio = cfg.pseudo_fakes_ratio
        if not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise ConfigError(f"data.pseudo_fakes_ratio={ratio!r} must be a number in [0, 1]")
        if cfg.pseudo_fakes != "none" and not cfg.landmark_cache:
            raise ConfigError("data.landmark_cache needs a folder for the landmarks when data.pseudo_fakes is on")
        self.pseudo_fakes = cfg.pseudo_fakes
        self.pseudo_fakes_ratio = float(ratio)
        self.blender = blender(cfg.sbi) if cfg.pseudo_fakes == "sbi" else None
        self.landmark_cache = cfg.landmark_cache
        # Filled with pseudo-fakes on: each real's landmarks (by path) and the pairs of each split.
        self.landmarks: dict[str, np.ndarray] = {}
        self.pairs: dict[str, int] = {}
        self.dropped_fakes = 0
        self.specs: list[DatasetSpec] = dataset_specs(
            cfg.root,
            manifest=cfg.manifest,
            group_by=cfg.group_by,
            val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction,
        )
        self.face_cache = cfg.face_cache
        self.no_face = cfg.no_face
        self.balance = cfg.balance
        # Filled by collect_samples with the face stage on: images where no face was found, and counts per class.
        self.no_face_files: list[str] = []
        self.face_counts: dict[str, dict[str, int]] = {}
        self.root = cfg.root
        self.preprocess = preprocess
        self.batch_size = cfg.batch_size
        self.num_workers = resolve_num_workers(cfg.num_workers)
        self.seed = seed
        self.pin_memory = torch.cuda.is_available()
        self.samples: list[Sample] = []
        self.bad_files: list[tuple[str, str]] = []
        self.layouts: dict[str, str] = {}
        self.test_digests: dict[str, str] = {}
        self.datasets: dict[str, ImageDataset] = {}

    @property
    def names(self) -> list[str]:
        """The datasets' names, in ``data.root`` order: what the dataset index of a batch points into."""
        return [spec.name for spec in self.specs]

    @property
    def layout(self) -> str:
        return "+".join(dict.fromkeys(self.layouts.values()))

    def collect_samples(self) -> None:
        """Find, check and split the samples. Idempotent; cheap to call twice."""
        if self.samples:
            return
        samples, self.layouts = collect_samples(self.specs, self.seed)
        # Of the split as found, before unusable files are dropped: what evaluate.py finds again from the settings.
        self.test_digests = {
            spec.name: split_digest([s for s in samples if s.dataset == spec.name], spec.root) for spec in self.specs
        }
        self.samples, self.bad_files = drop_bad_files(samples)
        if self.bad_files:
            shown = "\n".join(f"  {p}: {why}" for p, why in self.bad_files[:20])
            more = f"\n  ... and {len(self.bad_files) - 20} more" if len(self.bad_files) > 20 else ""
            log.warning("skipped %d unusable file(s):\n%s%s", len(self.bad_files), shown, more)
        if self.faces is not None:
            self._crop_faces()
        if self.blender is not None:
            self._find_landmarks()
        for split in SPLITS:
            labels = {s.label for s in self.samples if s.split == split}
            if not labels:
                raise DataError(f"data.root={self.root}: the {split} split has no usable images")
        if self.blender is None and not any(s.label == 1 for s in self.samples):
            raise DataError(
                f"data.root={self.root}: no fake images; add a Fake/ folder, or train on real faces alone with "
                "self-blended pseudo-fakes: data.pseudo_fakes=sbi"
            )
        for spec in self.specs:
            log.info(
                "dataset %s: %s (%s layout): %s", spec.name, spec.root, self.layouts[spec.name], self.summary(spec.name)
            )

    def _crop_faces(self) -> None:
        results = crop_dataset([s.path for s in self.samples], self.faces, self.face_cache)
        kept: list[Sample] = []
        counts = {name: {"found": 0, "none": 0} for name in LABELS}
        for sample, result in zip(self.samples, results, strict=True):
            if result.error:  # passed the header check, failed to decode
                self.bad_files.append((sample.path, result.error))
                continue
            counts[LABELS[sample.label]]["found" if result.crop else "none"] += 1
            if result.crop:
                kept.append(replace(sample, crop=result.crop))
            else:
                self.no_face_files.append(sample.path)
                if self.no_face == "whole":
                    kept.append(sample)
        self.samples, self.face_counts = kept, counts
        rates = ", ".join(
            f"{name} {c['found']}/{c['found'] + c['none']} ({100 * c['found'] / max(1, c['found'] + c['none']):.1f}%)"
            for name, c in counts.items()
        )
        log.info("face found in: %s; without a face: %s", rates, "dropped" if self.no_face == "drop" else "whole image")

    def _needs_pairs(self, split: str) -> bool:
        return split == "train" or not any(s.label == 1 for s in self.samples if s.split == split)

    def _find_landmarks(self) -> None:
        """Landmarks of the real faces pseudo-fakes are made from: training's, and those of a split without fakes."""
        if self.pseudo_fakes_ratio >= 1:  # every fake of training a pseudo-fake: the real fakes stay out
            kept = [s for s in self.samples if not (s.split == "train" and s.label == 1)]
            self.dropped_fakes = len(self.samples) - len(kept)
            self.samples = kept
            if self.dropped_fakes:
                log.info("data.pseudo_fakes_ratio=1: %d fake training images left out", self.dropped_fakes)
        reals = [s for s in self.samples if s.label == 0 and self._needs_pairs(s.split)]
        # The mesh reads the crop itself (the face stage's, else the image as it is): no box to carry over.
        found = landmark_dataset([s.source for s in reals], self.landmark_cache)
        self.landmarks = {s.path: points for s, points in zip(reals, found, strict=True) if points is not None}
        train = [s for s in reals if s.split == "train"]
        with_points = sum(s.path in self.landmarks for s in train)
        log.info("pseudo-fakes (sbi): landmarks found in %d of %d real training faces", with_points, len(train))
        if not with_points:
            raise DataError(
                f"data.pseudo_fakes=sbi: no landmarks found in any of the {len(train)} real training images "
                f"of data.root={self.root}; pseudo-fakes are made from real faces, and the face mesh finds one only "
                "in a face crop (turn the face stage on, data.faces, unless the images are face crops already)"
            )

    def _pseudo_fakes(self, split: str, subset: list[Sample]) -> PseudoFakes | None:
        """Training: blends of its reals, as many as pseudo_fakes_ratio asks of its fakes (one per real when it has
        none). Validation and test: fixed blends of their reals, only when they hold no fakes."""
        if self.blender is None or not self._needs_pairs(split):
            return None
        sources = [i for i, s in enumerate(subset) if s.label == 0 and s.path in self.landmarks]
        fakes = sum(s.label for s in subset)
        ratio = self.pseudo_fakes_ratio
        count = len(sources) if not fakes else round(ratio / (1 - ratio) * fakes) if ratio < 1 else 0
        points = [self.landmarks[subset[i].path] for i in sources]
        seed = None if split == "train" else self.seed
        return PseudoFakes(self.blender, sources, points, count, seed=seed, pairs_only=not fakes)

    def pseudo_fake_examples(self, n: int = 16) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """n fixed training pairs (real, pseudo-fake, mask) at the model's input size: what sbi_samples.png shows."""
        import cv2

        dataset = self.datasets.get("train")
        if dataset is None or dataset.pseudo is None:
            return []
        size = self.preprocess.image_size
        examples = []
        for k in np.linspace(0, len(dataset.pseudo.sources) - 1, min(n, len(dataset.pseudo.sources))).astype(int):
            real, fake, mask = dataset.blend(int(k), seed=self.seed)
            small = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA)
            examples.append((self.preprocess.resize(real), self.preprocess.resize(fake), small))
        return examples

    def summary(self, dataset: str | None = None) -> dict[str, dict[str, int]]:
        """Images per split and class, of one dataset or of all."""
        chosen = [s for s in self.samples if dataset is None or s.dataset == dataset]
        return {
            split: {
                name: sum(1 for s in chosen if s.split == split and s.label == lbl) for lbl, name in enumerate(LABELS)
            }
            for split in SPLITS
        }

    def describe(self) -> dict:
        """What metrics.json says about the data: every dataset's settings, layout and counts, and the totals."""
        return {
            "root": self.root if isinstance(self.root, str) else [spec.root for spec in self.specs],
            "layout": self.layout,
            "balance": self.balance,
            "seed": self.seed,
            **self.summary(),
            "datasets": {
                spec.name: {
                    **spec.to_dict(),
                    "layout": self.layouts.get(spec.name, ""),
                    "test_files_sha256": self.test_digests.get(spec.name, ""),
                    **self.summary(spec.name),
                }
                for spec in self.specs
            },
            **({"pseudo_fakes": self._describe_pseudo_fakes()} if self.blender is not None else {}),
        }

    def _describe_pseudo_fakes(self) -> dict:
        return {
            "method": self.pseudo_fakes,
            "ratio": self.pseudo_fakes_ratio,
            "pairs": dict(self.pairs),
            "real_fakes_left_out_of_training": self.dropped_fakes,
            "sources_with_landmarks": len(self.landmarks),
            "settings": asdict(self.blender.settings),
        }

    def setup(self, stage: str | None = None) -> None:
        self.collect_samples()
        augment = build_augment(self.settings.augment, self.preprocess.image_size)
        for split in SPLITS:
            subset = [s for s in self.samples if s.split == split]
            pseudo = self._pseudo_fakes(split, subset)
            train = split == "train"
            self.datasets[split] = ImageDataset(
                subset,
                self.preprocess,
                augment if train else None,
                datasets=self.names,
                pseudo_fakes=pseudo,
                surroundings=build_surroundings(self.settings.augment) if train else None,
            )
            self.pairs[split] = pseudo.count if pseudo and pseudo.sources else 0

    def _sampler(self) -> WeightedRandomSampler | None:
        """With data.balance=dataset: every dataset drawn equally often, however many images it holds."""
        if self.balance != "dataset" or len(self.specs) < 2:
            return None
        index = self.datasets["train"].dataset_index
        sizes = torch.bincount(torch.tensor(index), minlength=len(self.specs)).double()
        weights = 1.0 / sizes[torch.tensor(index)]
        generator = torch.Generator().manual_seed(self.seed)
        return WeightedRandomSampler(weights, num_samples=len(index), replacement=True, generator=generator)

    def _loader(self, split: str, shuffle: bool, sampler=None) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            drop_last=self.settings.drop_last and split == "train",
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_skip_bad,
            worker_init_fn=init_worker if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, sampler=self._sampler())

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
