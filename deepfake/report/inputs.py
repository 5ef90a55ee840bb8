"""Which files the report covers: the labelled files of every ROOT (no split invented for an unsplit folder), a
run's split.csv applied to them, and their label, split and dataset as numpy codes (:class:`Columns`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from deepfake.errors import DataError
from deepfake.samples import SPLITS, Sample, dataset_name, dataset_specs, list_samples, read_split

UNLISTED = "unlisted"  # the split of a file under a ROOT that --split-csv does not list


@dataclass
class Listing:
    samples: list[Sample]
    roots: list[dict] = field(default_factory=list)  # root, dataset, layout, files
    split_csv: str | None = None
    split_csv_absent: int = 0  # split.csv rows whose file is under no ROOT


def list_inputs(roots: Sequence[str | Path], split_csv: str | Path | None = None, manifest: str | None = None):
    """The samples of every ROOT (no split invented for unsplit data), with --split-csv's splits applied."""
    if not roots and not split_csv:
        raise DataError("name at least one dataset ROOT, or a run's split.csv with --split-csv")
    for root in roots:
        if not Path(root).expanduser().exists():
            raise DataError(f"{root}: no such file or directory")
    listing = Listing([])
    for spec in dataset_specs([str(r) for r in roots], manifest=manifest) if roots else []:
        found, layout = list_samples(spec.root, manifest=spec.manifest, name=spec.name)
        listing.roots.append({"root": spec.root, "dataset": spec.name, "layout": layout, "files": len(found)})
        listing.samples += found
    # Overlapping roots list a file twice: it is one file, not a duplicate.
    listing.samples = list({s.path: s for s in listing.samples}.values())
    if split_csv:
        listing.split_csv = str(split_csv)
        listing.samples, listing.split_csv_absent = apply_split_csv(listing.samples, split_csv, bool(roots))
    if not listing.samples:
        raise DataError(f"no files found in {', '.join(map(str, roots)) or split_csv}")
    return listing


def apply_split_csv(samples: list[Sample], split_csv: str | Path, have_roots: bool = True):
    """Each sample's split (and dataset and group) as the split.csv records it, matched by resolved path; and
    the number of split.csv rows that match no sample. Without roots, the split.csv's own samples."""
    path = Path(split_csv).expanduser()
    if not path.is_file():
        raise DataError(f"--split-csv {split_csv}: no such file")
    listed = read_split(path)
    if not have_roots:  # a split.csv without a dataset column: its rows are named after the run folder
        return [replace(s, dataset=s.dataset or dataset_name(path)) for s in listed], 0
    by_path = {s.path: s for s in listed}
    by_real: dict[str, Sample] | None = None
    matched: set[str] = set()
    out = []
    for sample in samples:
        entry = by_path.get(sample.path)
        if entry is None:
            # Paths differ only through a symlink or "..": resolve once, and only when needed.
            by_real = by_real if by_real is not None else {os.path.realpath(p): s for p, s in by_path.items()}
            entry = by_real.get(os.path.realpath(sample.path))
        if entry is None:
            out.append(replace(sample, split=UNLISTED))
            continue
        matched.add(entry.path)
        out.append(
            replace(
                sample, split=entry.split, dataset=entry.dataset or sample.dataset, group=entry.group or sample.group
            )
        )
    return out, len(by_path) - len(matched)


@dataclass
class Columns:
    """The samples' label, split and dataset as numpy codes, for the duplicate and profile arithmetic."""

    label: np.ndarray
    split: np.ndarray
    dataset: np.ndarray
    splits: list[str]
    datasets: list[str]

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Columns:
        splits: dict[str, int] = {}
        datasets: dict[str, int] = {}
        split = np.array([splits.setdefault(s.split, len(splits)) for s in samples], dtype=np.int32)
        dataset = np.array([datasets.setdefault(s.dataset, len(datasets)) for s in samples], dtype=np.int32)
        label = np.array([s.label for s in samples], dtype=np.int8)
        return cls(label, split, dataset, list(splits), list(datasets))

    def real_split(self) -> np.ndarray:
        """The split code where it is train/val/test, else -1 (no split, or unlisted): what a leak needs."""
        valid = np.array([s in SPLITS for s in self.splits], dtype=bool)
        return np.where(valid[self.split], self.split, -1) if len(self.split) else self.split

    def scopes(self) -> dict[str, np.ndarray]:
        """The file indices of each scope a profile is drawn for: each dataset, and all of them when several."""
        out = {name: np.flatnonzero(self.dataset == code) for code, name in enumerate(self.datasets)}
        return {"all datasets": np.arange(len(self.label)), **out} if len(out) > 1 else out
