"""From the samples of one or more datasets (:mod:`deepfake.datasets`) to batches of tensors for Lightning.

Every item is ``(image, label, dataset index)``: the index lets training report test metrics per dataset,
and ``data.balance=dataset`` draws each dataset equally often however many images it has. With
``data.faces=dlib`` every image is replaced by the crop of its largest face, cut once by
:mod:`deepfake.faces.dataset` (cached on disk) exactly as the predictor will cut it.

With ``data.pseudo_fakes=sbi``, real training faces also yield self-blended pseudo-fakes (:mod:`deepfake.sbi`):
an item is then a pair, the real face and its blend, augmented identically, so that the blend is the only
difference between them. A split without fakes (a folder of real faces only) gets fixed, seeded pairs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import MISSING
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, default_collate
from tqdm.auto import tqdm

from deepfake.samples import SPLITS, DatasetSpec, Sample, collect_samples, dataset_specs, split_digest
from deepfake.errors import ConfigError, DataError, ImageError
from deepfake.faces.dataset import crop_dataset, read_outline
from deepfake.faces.detect import FaceStage
from deepfake.faces.landmarks import landmark_dataset
from deepfake.images import check_image_file, read_image
from deepfake.preprocess import LABELS, Preprocess
from deepfake.sbi import BlendSettings, SelfBlender
from deepfake.surroundings import Surroundings, inside_share

log = logging.getLogger(__name__)


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
    outside_p: float = MISSING


@dataclass
class FaceConfig:  # the fields of deepfake.faces.FaceStage but its detector, which data.faces names
    margin: float = MISSING
    min_size: int = MISSING
    # blazeface
    model: str = MISSING
    min_score: float = MISSING
    fallback_score: float = MISSING
    nms_iou: float = MISSING
    tile_above: float = MISSING
    tile_overlap: float = MISSING
    big_face: float = MISSING
    sure_score: float = MISSING
    refine_below: float = MISSING
    presence: float = MISSING
    # dlib
    detect_size: int = MISSING
    second_size: int = MISSING
    upsample: int = MISSING
    threshold: float = MISSING
    pad: float = MISSING
    fallback_threshold: float = MISSING


@dataclass
class DataConfig:
    root: Any = MISSING  # a path, or a list of paths and of {root, name, manifest, group_by, ...} mappings
    manifest: str | None = MISSING
    group_by: str | None = MISSING
    balance: str = MISSING  # "none" or "dataset"
    image_size: int = MISSING
    batch_size: int = MISSING
    num_workers: Any = MISSING  # "auto" or a count
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    faces: str = MISSING  # "none", "blazeface" or "dlib"
    face: FaceConfig = field(default_factory=FaceConfig)
    face_cache: str = MISSING
    no_face: str = MISSING  # "drop" or "whole"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pseudo_fakes: str = MISSING  # "none" or "sbi"
    pseudo_fakes_ratio: float = MISSING
    sbi: dict[str, Any] = field(default_factory=dict)  # deepfake.sbi.BlendSettings' fields
    landmark_cache: str = MISSING


FACE_DETECTORS = {"blazeface": "blazeface", "dlib": "dlib_hog"}
NO_FACE = ("drop", "whole")
BALANCE = ("none", "dataset")
PSEUDO_FAKES = ("none", "sbi")


def blender(sbi: dict | None) -> SelfBlender:
    """The SelfBlender of ``data.sbi``; an unknown key or a bad value is a ConfigError naming it."""
    try:
        return SelfBlender(BlendSettings(**(sbi or {})))
    except TypeError as exc:
        raise ConfigError(f"data.sbi: {exc}".replace("BlendSettings.__init__() ", "")) from exc


@dataclass
class PseudoFakes:
    """The pairs a split's dataset adds: ``count`` blends of ``sources`` (sample indices) taken in turn.

    ``seed`` None: each pair is drawn anew from the worker's seeded torch RNG (training); an int: pair k is always
    the same blend (validation and test of a split without fakes)."""

    blender: SelfBlender
    sources: list[int]
    points: list[np.ndarray]
    count: int
    seed: int | None = None
    # A split without fakes: its sources appear only in their pairs, so real and fake stay balanced.
    pairs_only: bool = False


def face_stage(faces: str, face: dict | None) -> FaceStage | None:
    """The FaceStage of ``data.faces`` and ``data.face``; None for ``data.faces=none``."""
    if faces in (None, "none"):
        return None
    if faces not in FACE_DETECTORS:
        raise ConfigError(f"data.faces={faces} must be one of none, {', '.join(FACE_DETECTORS)}")
    return FaceStage(detector=FACE_DETECTORS[faces], **(face or {}))


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


def build_surroundings(cfg: dict | None) -> Surroundings | None:
    """Random surroundings beyond the image's edge in face crops (:mod:`deepfake.surroundings`), or None when
    augmentation is off or ``outside_p`` is 0."""
    if not cfg or not cfg.get("enabled", False) or not cfg.get("outside_p", 0):
        return None
    return Surroundings(float(cfg["outside_p"]))


class ImageDataset(Dataset):
    """Decodes, optionally augments and preprocesses one image per item.

    An item is ``(image, label, dataset index)``, the index into ``datasets`` (the run's dataset names) of the
    sample's dataset. An image that fails to decode yields None instead of raising, so one bad
    file cannot end a long run; :func:`collate_skip_bad` drops it from the batch.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocess: Preprocess,
        augment=None,
        datasets: Sequence[str] = (),
        pseudo_fakes: PseudoFakes | None = None,
        surroundings: Surroundings | None = None,
    ):
        self.samples = list(samples)
        self.preprocess = preprocess
        self.augment = augment
        self.surroundings = surroundings
        self.pseudo = pseudo_fakes if pseudo_fakes and pseudo_fakes.count and pseudo_fakes.sources else None
        # Items: these samples one by one, then the pseudo-fake pairs.
        self.singles = list(range(len(self.samples)))
        if self.pseudo and self.pseudo.pairs_only:
            paired = set(self.pseudo.sources)
            self.singles = [i for i in self.singles if i not in paired]
        index = {name: i for i, name in enumerate(datasets)}
        of_sample = [index.get(s.dataset, 0) for s in self.samples]
        self.dataset_index = [of_sample[i] for i in self.singles]
        if self.pseudo:  # pair k comes from sources[k % len(sources)], of that sample's dataset
            sources = self.pseudo.sources
            self.dataset_index += [of_sample[sources[k % len(sources)]] for k in range(self.pseudo.count)]

    def __len__(self) -> int:
        return len(self.dataset_index)

    def _augmented(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3), or (N, H, W, 3) that all get the same random augmentation (torchvision v2 draws one
        set of parameters per call)."""
        if self.augment is None:
            return rgb
        t = torch.from_numpy(np.ascontiguousarray(rgb))
        t = t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
        t = self.augment(t)
        return (t.permute(1, 2, 0) if t.ndim == 3 else t.permute(0, 2, 3, 1)).numpy()

    def _resized(self, sample: Sample, images: list[np.ndarray]) -> np.ndarray:
        """``images`` (the sample's crop, or crops of its size made from it) at model size, stacked when several,
        their outside filled alike by :attr:`surroundings` when it is on and the crop reaches past its image."""
        side = images[0].shape[0]
        resized = np.stack([self.preprocess.resize(rgb) for rgb in images])
        outline = read_outline(sample.crop) if self.surroundings is not None and sample.crop else None
        if outline is not None:
            share = inside_share(outline, side, self.preprocess.image_size)
            seed = int(torch.randint(0, 2**62, (1,)).item())  # the worker's RNG, seeded by Lightning per worker
            resized = self.surroundings(resized, share, np.random.default_rng(seed))
        return resized if len(images) > 1 else resized[0]

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(index)  # also what ends iteration over a dataset (the sequence protocol)
        if index >= len(self.singles):
            return self.pair(index - len(self.singles))
        sample = self.samples[self.singles[index]]
        try:
            rgb = self._resized(sample, [read_image(sample.source)])
        except ImageError as exc:
            log.warning("skipping %s: %s", sample.source, exc)
            return None
        x = torch.from_numpy(self.preprocess.normalise(self._augmented(rgb)))
        return x, torch.tensor(sample.label, dtype=torch.float32), self.dataset_index[index]

    def blend(self, k: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair k before resizing and augmentation: (real, pseudo-fake, mask) at the resolution of the crop.
        ``seed``: this fixed blend rather than the split's (a fixed one, or a fresh draw in training)."""
        pseudo = self.pseudo
        position = k % len(pseudo.sources)
        sample = self.samples[pseudo.sources[position]]
        seed = pseudo.seed if seed is None else seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # the worker's RNG, seeded by Lightning per worker
        else:
            seed = seed * 1_000_003 + k
        rgb = read_image(sample.source)
        fake, mask = pseudo.blender.blend(rgb, pseudo.points[position], np.random.default_rng(seed))
        return rgb, fake, mask

    def pair_source(self, k: int) -> Sample:
        """The real sample pair k is blended from."""
        return self.samples[self.pseudo.sources[k % len(self.pseudo.sources)]]

    def pair(self, k: int):
        """[(real, 0, dataset), (pseudo-fake, 1, dataset)]: one blend and its source, augmented alike."""
        try:
            real, fake, _ = self.blend(k)
        except ImageError as exc:
            log.warning("skipping pseudo-fake %d: %s", k, exc)
            return None
        both = self._augmented(self._resized(self.pair_source(k), [real, fake]))
        dataset = self.dataset_index[len(self.singles) + k]
        return [
            (torch.from_numpy(self.preprocess.normalise(img)), torch.tensor(float(label)), dataset)
            for label, img in enumerate(both)
        ]


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
    """Drop unreadable items (None) and flatten pseudo-fake pairs (lists) into the batch."""
    batch = [one for item in batch if item is not None for one in (item if isinstance(item, list) else [item])]
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
    """Batches of one or more datasets for Lightning; its settings are the ``data`` config group's.

    ``root`` is ``data.root``: one dataset, or a list (see :func:`deepfake.datasets.dataset_specs`).
    """

    def __init__(
        self,
        root,
        preprocess: Preprocess,
        *,
        batch_size: int,
        num_workers: int | str,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        manifest: str | None = None,
        group_by: str | None = None,
        balance: str = "none",
        augment: dict | None = None,
        pin_memory: bool | None = None,
        faces: FaceStage | None = None,
        face_cache: str | None = None,
        no_face: str = "whole",
        pseudo_fakes: str = "none",
        pseudo_fakes_ratio: float = 0.5,
        sbi: dict | None = None,
        landmark_cache: str | None = None,
    ):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"data.batch_size={batch_size!r} must be a positive integer")
        if no_face not in NO_FACE:
            raise ConfigError(f"data.no_face={no_face} must be one of {', '.join(NO_FACE)}")
        if balance not in BALANCE:
            raise ConfigError(f"data.balance={balance} must be one of {', '.join(BALANCE)}")
        if faces is not None and not face_cache:
            raise ConfigError("data.face_cache needs a folder for the face crops when data.faces is on")
        if pseudo_fakes not in PSEUDO_FAKES:
            raise ConfigError(f"data.pseudo_fakes={pseudo_fakes} must be one of {', '.join(PSEUDO_FAKES)}")
        if not isinstance(pseudo_fakes_ratio, int | float) or not 0 <= pseudo_fakes_ratio <= 1:
            raise ConfigError(f"data.pseudo_fakes_ratio={pseudo_fakes_ratio!r} must be a number in [0, 1]")
        if pseudo_fakes != "none" and not landmark_cache:
            raise ConfigError("data.landmark_cache needs a folder for the landmarks when data.pseudo_fakes is on")
        self.pseudo_fakes = pseudo_fakes
        self.pseudo_fakes_ratio = float(pseudo_fakes_ratio)
        self.blender = blender(sbi) if pseudo_fakes == "sbi" else None
        self.landmark_cache = landmark_cache
        # Filled with pseudo-fakes on: each real's landmarks (by path) and the pairs of each split.
        self.landmarks: dict[str, np.ndarray] = {}
        self.pairs: dict[str, int] = {}
        self.dropped_fakes = 0
        self.specs: list[DatasetSpec] = dataset_specs(
            root, manifest=manifest, group_by=group_by, val_fraction=val_fraction, test_fraction=test_fraction
        )
        self.faces = faces
        self.face_cache = face_cache
        self.no_face = no_face
        self.balance = balance
        # Filled by collect_samples with the face stage on: images where no face was found, and counts per class.
        self.no_face_files: list[str] = []
        self.face_counts: dict[str, dict[str, int]] = {}
        self.root = root
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.num_workers = resolve_num_workers(num_workers)
        self.seed = seed
        self.augment_cfg = augment
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
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
        augment = build_augment(self.augment_cfg, self.preprocess.image_size)
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
                surroundings=build_surroundings(self.augment_cfg) if train else None,
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
