"""What a dataset is on disk: its labelled images, which dataset each belongs to, and its train/val/test split.

A dataset root is read in one of three layouts (folder names are case-insensitive):

* two class folders, ``Real/`` and ``Fake/`` (or ``Real/`` alone: real faces to make pseudo-fakes from, see
  :mod:`deepfake.sbi`);
* a pre-split tree ``Train|train/``, ``Validation|Val|val/``, ``Test|test/``, each holding the two class
  folders (the Kaggle "deepfake-and-real-images" layout);
* a CSV manifest: columns ``file`` (or ``path``) and ``label``, an optional ``split``, and any others. It is the
  root itself, or ``manifest=`` names it relative to the root (``data.manifest=metadata.csv``). A run's
  ``split.csv`` is such a manifest, with ``dataset`` and ``group`` columns too.

Images without a split are split here, per class and seeded: by file (:func:`stratified_split`), or with
``group_by=<column>`` so that all images of one group (a source video, a person) land in the same split
(:func:`grouped_split`, scikit-learn's ``StratifiedGroupKFold``). Several roots are one run's data
(:func:`dataset_specs`); each is split on its own, with its own settings, and every sample names its dataset.

Labels are real = 0 and fake = 1 everywhere (see :mod:`deepfake.preprocess`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deepfake.errors import ConfigError, DataError
from deepfake.images import list_files
from deepfake.preprocess import FAKE, REAL

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ("path", "label", "split", "crop", "dataset", "group")

_SPLIT_DIRS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
_CLASS_DIRS = {"real": REAL, "fake": FAKE}
_PATH_COLUMNS = ("path", "file")
_KNOWN_COLUMNS = {*_PATH_COLUMNS, "label", "split", "crop", "dataset"}
# The manifests commands find in a dataset folder by themselves (DFDC and its crops ship metadata.csv).
MANIFEST_NAMES = ("metadata.csv", "manifest.csv")


@dataclass(frozen=True)
class SplitSettings:
    """How a dataset without a split of its own is split: the seed and the shares of validation and test.

    :data:`SPLIT` holds the defaults every function here uses, the values of configs/train.yaml (``seed``) and
    configs/data/default.yaml (``data.val_fraction``, ``data.test_fraction``): a command that reads a dataset
    as training would split it (evaluate.py) takes them from there."""

    seed: int = 42
    val_fraction: float = 0.1
    test_fraction: float = 0.1


SPLIT = SplitSettings()


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    split: str = ""
    crop: str = ""  # with the face stage: the crop of the image's largest face, read instead of the image
    dataset: str = ""  # the name of the dataset (root) it comes from
    group: str = ""  # its value of the group_by column: samples of one group share a split

    @property
    def source(self) -> str:
        """The file the model reads: the face crop, else the image."""
        return self.crop or self.path


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a run and how to read and split it (the ``data`` settings that apply to it)."""

    root: str
    name: str
    manifest: str | None = None
    group_by: str | None = None
    val_fraction: float = SPLIT.val_fraction
    test_fraction: float = SPLIT.test_fraction

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# ---------------------------------------------------------------------------
# Several datasets


def dataset_name(root: str | Path) -> str:
    """A dataset's name: its folder's name (a manifest file: the folder it sits in)."""
    path = Path(root).expanduser().resolve()
    return (path.parent if path.is_file() else path).name or "data"


_SPEC_KEYS = {"root", "name", "manifest", "group_by", "val_fraction", "test_fraction"}


def dataset_specs(
    root,
    *,
    manifest: str | None = None,
    group_by: str | None = None,
    val_fraction: float = SPLIT.val_fraction,
    test_fraction: float = SPLIT.test_fraction,
) -> list[DatasetSpec]:
    """The datasets of ``data.root``: one path, or a list of paths and of mappings that set a dataset's own
    ``root``, ``name``, ``manifest``, ``group_by``, ``val_fraction`` or ``test_fraction``.

    With several roots, ``manifest`` applies to the roots that hold that file (the others are read by their
    folders) and ``group_by`` to the roots read by a manifest; a setting that applies to none is an error.
    """
    entries = list(root) if isinstance(root, Sequence) and not isinstance(root, str) else [root]
    if not entries:
        raise ConfigError("data.root is an empty list: name at least one dataset")
    specs = []
    for entry in entries:
        if isinstance(entry, Mapping):
            if unknown := set(entry) - _SPEC_KEYS:
                raise ConfigError(f"data.root entry {dict(entry)}: unknown key(s) {sorted(unknown)}")
            if "root" not in entry:
                raise ConfigError(f"data.root entry {dict(entry)} has no root")
            own = dict(entry)
        elif isinstance(entry, str | Path) and str(entry):
            own = {"root": str(entry)}
        else:
            raise ConfigError(f"data.root entry {entry!r} is not a path or a mapping with a root")
        path = Path(own["root"]).expanduser().resolve()
        if not path.exists():
            raise DataError(f"data.root={own['root']}: no such file or directory")
        shared_manifest = manifest if "manifest" not in own else None
        if shared_manifest and len(entries) > 1 and not _manifest_path(path, shared_manifest).is_file():
            shared_manifest = None  # this root is read by its folders
        spec_manifest = own.get("manifest", shared_manifest)
        spec_group = own.get("group_by", group_by if (spec_manifest or path.is_file()) else None)
        specs.append(
            DatasetSpec(
                str(path),
                str(own.get("name") or dataset_name(path)),
                spec_manifest or None,
                spec_group or None,
                float(own.get("val_fraction", val_fraction)),
                float(own.get("test_fraction", test_fraction)),
            )
        )
    specs = [replace(spec, name=name) for spec, name in zip(specs, unique_names([s.name for s in specs]), strict=True)]
    if manifest and not any(s.manifest for s in specs):
        raise DataError(f"data.manifest={manifest}: no such file in {' or '.join(s.root for s in specs)}")
    if group_by and not any(s.group_by for s in specs):
        raise ConfigError(f"data.group_by={group_by} needs a manifest (data.manifest=...) with a {group_by} column")
    return specs


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with a repeat numbered from its second occurrence: two "faces" read "faces", "faces_2"."""
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def find_manifest(root: str | Path) -> str | None:
    """The name of the manifest a dataset folder ships (``MANIFEST_NAMES``) when it lists file (or path) and
    label; None when it has none."""
    root = Path(root)
    for name in MANIFEST_NAMES if root.is_dir() else ():
        try:
            with open(root / name, newline="", encoding="utf-8-sig") as fh:
                fields = {f.strip().lower() for f in next(csv.reader(fh), [])}
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        if "label" in fields and fields & set(_PATH_COLUMNS):
            return name
    return None


def collect_samples(specs: Sequence[DatasetSpec], seed: int) -> tuple[list[Sample], dict[str, str]]:
    """Every sample of every dataset, each split with its own settings; and each dataset's layout."""
    samples: list[Sample] = []
    layouts: dict[str, str] = {}
    for spec in specs:
        found, layouts[spec.name] = find_samples(
            spec.root,
            manifest=spec.manifest,
            group_by=spec.group_by,
            val_fraction=spec.val_fraction,
            test_fraction=spec.test_fraction,
            seed=seed,
            name=spec.name,
        )
        samples += found
    return samples, layouts


# ---------------------------------------------------------------------------
# One dataset


def find_samples(
    root: str | Path,
    *,
    val_fraction: float = SPLIT.val_fraction,
    test_fraction: float = SPLIT.test_fraction,
    seed: int = SPLIT.seed,
    manifest: str | None = None,
    group_by: str | None = None,
    name: str | None = None,
) -> tuple[list[Sample], str]:
    """Every sample under ``root`` with its label and split, and the name of the layout found
    ("folders", "presplit" or "manifest").

    Samples without a split in the source are split here, per class and reproducible from ``seed``, by file,
    or by ``group_by`` (a manifest column) so that no group spans two splits. A pre-split tree without a
    validation folder gives ``val_fraction`` of its training images to validation. The defaults are :data:`SPLIT`'s,
    those of configs/data/default.yaml and train.yaml, for commands that read a dataset as training split it.
    """
    _check_fractions(val_fraction, test_fraction)
    samples, layout, columns = _list(root, manifest, group_by, name)
    unsplit = [s for s in samples if not s.split]
    if unsplit:
        if group_by:
            split = grouped_split(unsplit, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        else:
            if candidates := _group_candidates(columns):
                log.warning(
                    "%s has a column that groups images (%s) but data.group_by is not set: images of one group "
                    "can land in two splits, and the test score then measures memory. Set data.group_by=%s",
                    manifest or root,
                    ", ".join(candidates),
                    candidates[0],
                )
            split = stratified_split(unsplit, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        samples = [s for s in samples if s.split] + split
    elif layout == "presplit" and not any(s.split == "val" for s in samples):
        log.warning("%s has no Validation/ folder: data.val_fraction=%g of Train/ is validation", root, val_fraction)
        train = [s for s in samples if s.split == "train"]
        carved = stratified_split(
            [replace(s, split="") for s in train], val_fraction=val_fraction, test_fraction=0.0, seed=seed
        )
        samples = [s for s in samples if s.split != "train"] + carved
    return samples, layout


def list_samples(root: str | Path, *, manifest: str | None = None, name: str | None = None) -> tuple[list[Sample], str]:
    """The samples of ``root`` as its layout gives them: the split is "" where the source has none."""
    samples, layout, _ = _list(root, manifest, None, name)
    return samples, layout


def read_split(path: str | Path) -> list[Sample]:
    """The samples of a run's ``split.csv``, as training wrote them. A split.csv without a ``dataset`` column
    (runs before several datasets) leaves ``dataset`` empty rather than naming rows after the run folder."""
    return _list(path, None, None, "")[0]


def split_digest(samples: Sequence[Sample], root: str | Path, split: str = "test") -> str:
    """SHA-256 of the sorted names (relative to ``root``) of one split's files: the same split found again
    elsewhere (another machine, another mount point) gives the same digest."""
    root = Path(root)
    base = root if root.is_dir() else root.parent
    names = sorted(os.path.relpath(s.path, base) for s in samples if s.split == split)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def write_split(samples: Sequence[Sample], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(SPLIT_COLUMNS)
        writer.writerows((s.path, s.label, s.split, s.crop, s.dataset, s.group) for s in samples)


def _list(root, manifest, group_by, name) -> tuple[list[Sample], str, dict[str, list[str]]]:
    # Resolved: split.csv records these paths, and "/old/cwd/../data/x.jpg" breaks when /old/cwd goes away.
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise DataError(f"data.root={root}: no such file or directory")
    name = dataset_name(root) if name is None else name
    if manifest or root.is_file():
        path = _manifest_path(root, manifest) if manifest else root
        if not path.is_file():
            raise DataError(f"data.manifest={manifest}: no such file in {root}")
        samples, columns = _read_manifest(path, group_by, name)
        return samples, "manifest", columns
    if group_by:
        raise ConfigError(f"data.group_by={group_by} needs a manifest (data.manifest=...) with a {group_by} column")
    samples, layout = _scan_tree(root, name)
    return samples, layout, {}


def _manifest_path(root: Path, manifest: str) -> Path:
    path = Path(manifest).expanduser()
    return path if path.is_absolute() else (root if root.is_dir() else root.parent) / path


# ---------------------------------------------------------------------------
# Splitting


def stratified_split(
    samples: Sequence[Sample],
    *,
    val_fraction: float = SPLIT.val_fraction,
    test_fraction: float = SPLIT.test_fraction,
    seed: int = SPLIT.seed,
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
            out.append(replace(members[idx], split=split))
    return sorted(out, key=lambda s: (SPLITS.index(s.split), s.path))


def grouped_split(
    samples: Sequence[Sample],
    *,
    val_fraction: float = SPLIT.val_fraction,
    test_fraction: float = SPLIT.test_fraction,
    seed: int = SPLIT.seed,
) -> list[Sample]:
    """Assign train/val/test by group: every sample of a group in one split, each split's classes in about the
    dataset's proportion (scikit-learn's StratifiedGroupKFold, shuffled from ``seed``).

    A split of fraction f is one fold of round(1/f) folds, so it holds about f of the samples (0.1: 10%,
    0.15: 1/7). Independent of listing order.
    """
    _check_fractions(val_fraction, test_fraction)
    ordered = sorted(samples, key=lambda s: s.path)
    labels = np.array([s.label for s in ordered])
    groups = np.array([s.group for s in ordered])
    rest = np.arange(len(ordered))
    test = _one_fold(rest, labels, groups, test_fraction, seed, "test")
    rest = np.setdiff1d(rest, test)
    val = _one_fold(rest, labels, groups, val_fraction / (1 - test_fraction), seed + 1, "val")
    split = np.full(len(ordered), "train", dtype=object)
    split[test], split[val] = "test", "val"
    out = [replace(s, split=str(p)) for s, p in zip(ordered, split, strict=True)]
    return sorted(out, key=lambda s: (SPLITS.index(s.split), s.path))


def _one_fold(index: np.ndarray, labels, groups, fraction: float, seed: int, what: str) -> np.ndarray:
    """The indices (into the full arrays) of one fold of about ``fraction`` of ``index``."""
    if fraction <= 0:
        return np.array([], dtype=int)
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / fraction))
    n_groups = len(set(groups[index]))
    if n_groups < n_splits:
        raise DataError(
            f"data.group_by: {n_groups} groups are too few to set about {fraction:.0%} of them apart for {what}"
        )
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held = next(folds.split(index, labels[index], groups[index]))
    return index[held]


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must each be in "
            "[0, 1) and leave some images for training"
        )


def _group_candidates(columns: dict[str, list[str]]) -> list[str]:
    """Manifest columns whose values repeat across images: likely groups (a source video, a person)."""
    found = []
    for column, values in columns.items():
        distinct = len(set(values))
        if 1 < distinct < len(values):
            found.append(column)
    return found


# ---------------------------------------------------------------------------
# Layouts


def _subdirs(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _class_folders(folder: Path) -> dict[int, Path] | None:
    found = {_CLASS_DIRS[name]: path for name, path in _subdirs(folder).items() if name in _CLASS_DIRS}
    # Real/ alone is a dataset too: pseudo-fakes (data.pseudo_fakes=sbi) need no fakes; the data module says
    # so when a split ends up without any.
    return found if REAL in found else None


def _scan_tree(root: Path, name: str) -> tuple[list[Sample], str]:
    classes = _class_folders(root)
    if classes:
        return _list_classes(classes, "", name), "folders"
    split_dirs = {_SPLIT_DIRS[n]: p for n, p in _subdirs(root).items() if n in _SPLIT_DIRS}
    if split_dirs:
        samples = []
        for split, folder in sorted(split_dirs.items()):
            classes = _class_folders(folder)
            if not classes:
                raise DataError(f"{folder} has no Real/ (and Fake/) folder inside")
            samples += _list_classes(classes, split, name)
        missing = {"train", "test"} - split_dirs.keys()
        if missing:
            raise DataError(f"{root} is a pre-split tree but has no {' or '.join(sorted(missing))} folder")
        return samples, "presplit"
    # Archives often unpack to a single wrapping folder (Kaggle's "Dataset/").
    subs = list(_subdirs(root).values())
    if len(subs) == 1:
        return _scan_tree(subs[0], name)
    raise DataError(
        f"data.root={root}: no dataset layout found. Expected Real/ and Fake/ folders, "
        "Train/ Validation/ Test/ folders each holding Real/ and Fake/, or a CSV manifest "
        "with columns file (or path), label[, split] (data.manifest=...)"
    )


def _list_classes(classes: dict[int, Path], split: str, name: str) -> list[Sample]:
    # Every file, not only image suffixes: a stray non-image is reported as skipped, not silently ignored.
    return [
        Sample(path, label, split, dataset=name)
        for label, folder in sorted(classes.items())
        for path in list_files(folder)
    ]


def _read_manifest(path: Path, group_by: str | None, name: str) -> tuple[list[Sample], dict[str, list[str]]]:
    """The samples of a manifest, and the values of its other columns (to spot group columns)."""
    base = path.parent
    group_key = group_by.strip().lower() if group_by else None
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
            path_key = next((k for k in _PATH_COLUMNS if k in fields), None)
            if path_key is None or "label" not in fields:
                raise DataError(f"manifest {path} needs columns file (or path) and label; found {fields}")
            if group_key and group_key not in fields:
                raise ConfigError(f"data.group_by={group_by}: manifest {path} has no such column (it has {fields})")
            extra = [f for f in fields if f not in _KNOWN_COLUMNS and f != "group"]
            columns: dict[str, list[str]] = {f: [] for f in extra}
            samples = []
            for lineno, row in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                if not row.get(path_key):
                    raise DataError(f"{path}:{lineno}: no {path_key}")
                group = row.get(group_key, "") if group_key else row.get("group", "")
                if group_key and not group:
                    raise DataError(f"{path}:{lineno}: empty {group_by}: every image needs a group")
                samples.append(
                    Sample(
                        str(base / row[path_key]),
                        _parse_label(row["label"], path, lineno),
                        _parse_split(row.get("split", ""), path, lineno),
                        row.get("crop", ""),
                        row.get("dataset") or name,
                        group,
                    )
                )
                for f in extra:
                    columns[f].append(row.get(f, ""))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read manifest {path}: {exc}") from exc
    if not samples:
        raise DataError(f"manifest {path} lists no images")
    return samples, columns


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
