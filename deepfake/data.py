"""From a dataset root on disk to batches of tensors.

Three layouts are recognised (folder names are case-insensitive):

* two class folders, ``Real/`` and ``Fake/``: split 80/10/10, stratified, seeded;
* a pre-split tree ``Train|train/``, ``Validation|Val|val/``, ``Test|test/``, each
  holding the two class folders (the Kaggle "deepfake-and-real-images" layout);
* a CSV manifest with columns ``path,label[,split]``.

Labels are real = 0 and fake = 1 everywhere (see :mod:`deepfake.preprocess`).

With ``data.faces=dlib`` every image is replaced by the crop of its largest face, cut once by
:mod:`deepfake.faces.dataset` (cached on disk) exactly as the predictor will cut it.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import MISSING
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from deepfake.errors import ConfigError, DataError, ImageError
from deepfake.faces.dataset import crop_dataset
from deepfake.faces.detect import FaceStage
from deepfake.images import check_image_file, list_files, read_image
from deepfake.preprocess import FAKE, LABELS, REAL, Preprocess

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


# The types of configs/data/*.yaml (their values live there): Hydra checks every override against them.
@dataclass
class AugmentConfig:
    enabled: bool = MISSING
    crop_scale: list[float] | None = MISSING
    hflip: float = MISSING
    rotation: float = MISSING
    brightness: float = MISSING
    contrast: float = MISSING
    jpeg_p: float = MISSING
    jpeg_quality: list[int] = MISSING
    blur_p: float = MISSING
    blur_sigma: list[float] = MISSING


@dataclass
class FaceConfig:  # the fields of deepfake.faces.FaceStage but its detector, which data.faces names
    margin: float = MISSING
    detect_size: int = MISSING
    second_size: int = MISSING
    upsample: int = MISSING
    min_size: int = MISSING
    threshold: float = MISSING
    pad: float = MISSING
    fallback_threshold: float = MISSING


@dataclass
class DataConfig:
    root: str = MISSING
    image_size: int = MISSING
    batch_size: int = MISSING
    num_workers: Any = MISSING  # "auto" or a count
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    faces: str = MISSING  # "none" or "dlib"
    face: FaceConfig = field(default_factory=FaceConfig)
    face_cache: str = MISSING
    no_face: str = MISSING  # "drop" or "whole"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


FACE_DETECTORS = {"dlib": "dlib_hog"}
NO_FACE = ("drop", "whole")


def face_stage(faces: str, face: dict | None) -> FaceStage | None:
    """The FaceStage of ``data.faces`` and ``data.face``; None for ``data.faces=none``."""
    if faces in (None, "none"):
        return None
    if faces not in FACE_DETECTORS:
        raise ConfigError(f"data.faces={faces} must be one of none, {', '.join(FACE_DETECTORS)}")
    return FaceStage(detector=FACE_DETECTORS[faces], **(face or {}))


_SPLIT_DIRS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
_CLASS_DIRS = {"real": REAL, "fake": FAKE}


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    split: str = ""
    crop: str = ""  # with the face stage: the crop of the image's largest face, read instead of the image

    @property
    def source(self) -> str:
        """The file the model reads: the face crop, else the image."""
        return self.crop or self.path


# ---------------------------------------------------------------------------
# Layout discovery and splitting


def find_samples(
    root: str | Path, *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 42
) -> tuple[list[Sample], str]:
    """Find every sample under ``root`` with its label and split.

    Returns the samples and the name of the layout found ("folders", "presplit"
    or "manifest"). Samples without a split in the source are split here,
    stratified by class and reproducible from ``seed``; a pre-split tree without
    a validation folder gives ``val_fraction`` of its training images to validation.
    The defaults are those of configs/data/default.yaml and train.yaml, for
    commands that read a dataset as training split it (evaluate.py, export.py).
    """
    _check_fractions(val_fraction, test_fraction)
    # Resolved: split.csv records these paths, and "/old/cwd/../data/x.jpg" breaks when /old/cwd goes away.
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise DataError(f"data.root={root}: no such file or directory")
    if root.is_file():
        samples, layout = _read_manifest(root), "manifest"
    else:
        samples, layout = _scan_tree(root, val_fraction, seed)
    unsplit = [s for s in samples if not s.split]
    if unsplit:
        samples = [s for s in samples if s.split] + stratified_split(
            unsplit, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    return samples, layout


def stratified_split(
    samples: Sequence[Sample], *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 42
) -> list[Sample]:
    """Assign train/val/test per class, in proportion, independent of listing order."""
    _check_fractions(val_fraction, test_fraction)
    out: list[Sample] = []
    for label in (REAL, FAKE):
        members = sorted((s for s in samples if s.label == label), key=lambda s: s.path)
        order = np.random.default_rng(seed + label).permutation(len(members))
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        for rank, idx in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            out.append(Sample(members[idx].path, label, split))
    return sorted(out, key=lambda s: (SPLITS.index(s.split), s.path))


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must each be in "
            "[0, 1) and leave some images for training"
        )


def _subdirs(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _class_folders(folder: Path) -> dict[int, Path] | None:
    found = {_CLASS_DIRS[name]: path for name, path in _subdirs(folder).items() if name in _CLASS_DIRS}
    return found if len(found) == 2 else None


def _scan_tree(root: Path, val_fraction: float, seed: int) -> tuple[list[Sample], str]:
    classes = _class_folders(root)
    if classes:
        return _list_classes(classes, split=""), "folders"
    split_dirs = {_SPLIT_DIRS[n]: p for n, p in _subdirs(root).items() if n in _SPLIT_DIRS}
    if split_dirs:
        samples = []
        for split, folder in sorted(split_dirs.items()):
            classes = _class_folders(folder)
            if not classes:
                raise DataError(f"{folder} has no Real/ and Fake/ folders inside")
            samples += _list_classes(classes, split=split)
        missing = {"train", "test"} - split_dirs.keys()
        if missing:
            raise DataError(f"{root} is a pre-split tree but has no {' or '.join(sorted(missing))} folder")
        if "val" not in split_dirs:
            log.warning(
                "%s has no Validation/ folder: data.val_fraction=%g of Train/ is validation", root, val_fraction
            )
            train = [s for s in samples if s.split == "train"]
            carved = stratified_split(train, val_fraction=val_fraction, test_fraction=0.0, seed=seed)
            samples = [s for s in samples if s.split != "train"] + carved
        return samples, "presplit"
    # Archives often unpack to a single wrapping folder (Kaggle's "Dataset/").
    subs = list(_subdirs(root).values())
    if len(subs) == 1:
        return _scan_tree(subs[0], val_fraction, seed)
    raise DataError(
        f"data.root={root}: no dataset layout found. Expected Real/ and Fake/ folders, "
        "Train/ Validation/ Test/ folders each holding Real/ and Fake/, or a CSV manifest "
        "with columns path,label[,split]"
    )


def _list_classes(classes: dict[int, Path], split: str) -> list[Sample]:
    # Every file, not only image suffixes: a stray non-image is reported as skipped, not silently ignored.
    return [Sample(path, label, split) for label, folder in sorted(classes.items()) for path in list_files(folder)]


def _read_manifest(path: Path) -> list[Sample]:
    base = path.parent
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = {f.strip().lower() for f in reader.fieldnames or []}
            if not {"path", "label"} <= fields:
                raise DataError(f"manifest {path} needs columns path,label[,split]; found {sorted(fields)}")
            samples = []
            for lineno, row in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                samples.append(
                    Sample(
                        str(base / row["path"]),
                        _parse_label(row["label"], path, lineno),
                        _parse_split(row.get("split", ""), path, lineno),
                    )
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read manifest {path}: {exc}") from exc
    if not samples:
        raise DataError(f"manifest {path} lists no images")
    return samples


def _parse_label(value: str, path: Path, lineno: int) -> int:
    v = value.lower()
    if v in ("0", "real"):
        return REAL
    if v in ("1", "fake"):
        return FAKE
    raise DataError(f"{path}:{lineno}: label {value!r} is not one of 0, 1, real, fake")


def _parse_split(value: str, path: Path, lineno: int) -> str:
    if not value:
        return ""
    split = _SPLIT_DIRS.get(value.lower())
    if split is None:
        raise DataError(f"{path}:{lineno}: split {value!r} is not one of train, val, validation, test")
    return split


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


def write_split(samples: Sequence[Sample], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "crop"])
        writer.writerows((s.path, s.label, s.split, s.crop) for s in samples)


# ---------------------------------------------------------------------------
# Dataset and augmentation


def build_augment(cfg: dict | None, size: int):
    """A torchvision v2 pipeline on uint8 CHW tensors of ``size`` pixels, or None when augmentation is off."""
    if not cfg or not cfg.get("enabled", False):
        return None
    from torchvision.transforms import v2

    steps = []
    if cfg.get("crop_scale"):
        # Zoom into a random part of the (already resized) image and back to full size: new framings
        # of the same face, the augmentation that curbs over-fitting most on a small dataset.
        steps.append(v2.RandomResizedCrop(size, scale=tuple(cfg["crop_scale"]), ratio=(0.9, 1.1), antialias=True))
    if cfg.get("hflip", 0):
        steps.append(v2.RandomHorizontalFlip(p=cfg["hflip"]))
    if cfg.get("rotation", 0):
        steps.append(v2.RandomRotation(degrees=cfg["rotation"]))
    if cfg.get("brightness", 0) or cfg.get("contrast", 0):
        steps.append(v2.ColorJitter(brightness=cfg.get("brightness", 0), contrast=cfg.get("contrast", 0)))
    if cfg.get("jpeg_p", 0):
        steps.append(v2.RandomApply([v2.JPEG(quality=tuple(cfg.get("jpeg_quality", (60, 95))))], p=cfg["jpeg_p"]))
    if cfg.get("blur_p", 0):
        steps.append(
            v2.RandomApply(
                [v2.GaussianBlur(kernel_size=5, sigma=tuple(cfg.get("blur_sigma", (0.1, 1.5))))], p=cfg["blur_p"]
            )
        )
    return v2.Compose(steps) if steps else None


class ImageDataset(Dataset):
    """Decodes, optionally augments and preprocesses one image per item.

    An image that fails to decode yields None instead of raising, so one bad
    file cannot end a long run; :func:`collate_skip_bad` drops it from the batch.
    """

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocess, augment=None):
        self.samples = list(samples)
        self.preprocess = preprocess
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            rgb = self.preprocess.resize(read_image(sample.source))
        except ImageError as exc:
            log.warning("skipping %s: %s", sample.source, exc)
            return None
        if self.augment is not None:
            rgb = self.augment(torch.from_numpy(rgb).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        x = torch.from_numpy(self.preprocess.normalise(rgb))
        return x, torch.tensor(sample.label, dtype=torch.float32)


def init_worker(worker_id: int) -> None:
    """Seed the worker as Lightning does, and keep OpenCV to one thread per worker process."""
    import cv2
    from lightning.fabric.utilities.seed import pl_worker_init_function

    # 0 (run sequentially), not 1: setNumThreads(1) tears down the thread pool inherited from the parent,
    # and when the parent had started one (cv2.applyColorMap, or cvtColor/resize of a large image), the
    # forked worker waits forever for that pool's threads, which do not exist in the child.
    cv2.setNumThreads(0)
    pl_worker_init_function(worker_id)


def collate_skip_bad(batch):
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    return default_collate(batch)


# ---------------------------------------------------------------------------
# LightningDataModule


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
    """Batches of one dataset root for Lightning; its settings are the ``data`` config group's."""

    def __init__(
        self,
        root: str,
        preprocess: Preprocess,
        *,
        batch_size: int,
        num_workers: int | str,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        augment: dict | None = None,
        pin_memory: bool | None = None,
        faces: FaceStage | None = None,
        face_cache: str | None = None,
        no_face: str = "whole",
    ):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"data.batch_size={batch_size!r} must be a positive integer")
        if no_face not in NO_FACE:
            raise ConfigError(f"data.no_face={no_face} must be one of {', '.join(NO_FACE)}")
        if faces is not None and not face_cache:
            raise ConfigError("data.face_cache needs a folder for the face crops when data.faces is on")
        self.faces = faces
        self.face_cache = face_cache
        self.no_face = no_face
        # Filled by collect_samples with the face stage on: images where no face was found, and counts per class.
        self.no_face_files: list[str] = []
        self.face_counts: dict[str, dict[str, int]] = {}
        self.root = root
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.num_workers = resolve_num_workers(num_workers)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.augment_cfg = augment
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.samples: list[Sample] = []
        self.bad_files: list[tuple[str, str]] = []
        self.layout = ""
        self.datasets: dict[str, ImageDataset] = {}

    def collect_samples(self) -> None:
        """Find, check and split the samples. Idempotent; cheap to call twice."""
        if self.samples:
            return
        samples, self.layout = find_samples(
            self.root, val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=self.seed
        )
        self.samples, self.bad_files = drop_bad_files(samples)
        if self.bad_files:
            shown = "\n".join(f"  {p}: {why}" for p, why in self.bad_files[:20])
            more = f"\n  ... and {len(self.bad_files) - 20} more" if len(self.bad_files) > 20 else ""
            log.warning("skipped %d unusable file(s):\n%s%s", len(self.bad_files), shown, more)
        if self.faces is not None:
            self._crop_faces()
        for split in SPLITS:
            labels = {s.label for s in self.samples if s.split == split}
            if not labels:
                raise DataError(f"data.root={self.root}: the {split} split has no usable images")
        log.info("dataset %s (%s layout): %s", self.root, self.layout, self.summary())

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
                kept.append(Sample(sample.path, sample.label, sample.split, result.crop))
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

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            split: {
                name: sum(1 for s in self.samples if s.split == split and s.label == lbl)
                for lbl, name in enumerate(LABELS)
            }
            for split in SPLITS
        }

    def setup(self, stage: str | None = None) -> None:
        self.collect_samples()
        augment = build_augment(self.augment_cfg, self.preprocess.image_size)
        for split in SPLITS:
            subset = [s for s in self.samples if s.split == split]
            self.datasets[split] = ImageDataset(subset, self.preprocess, augment if split == "train" else None)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_skip_bad,
            worker_init_fn=init_worker if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
