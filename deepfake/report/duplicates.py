"""Duplicates: exact ones share a SHA-256; near ones are pairs whose perceptual hashes differ in a few bits, found
through a pigeonhole multi-index (:func:`near_pairs`) instead of comparing every pair. Each group or pair is
classed as within a class, across classes, across splits (a leak) and across datasets; all of them go to
duplicates.csv, counts and examples to summary.json."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from deepfake.preprocess import LABELS
from deepfake.report.inputs import Columns
from deepfake.report.scan import Scan
from deepfake.samples import Sample

# Measured on faces-mini and dfdc-mini (bench/report_bench.py --distances): re-encoding at JPEG quality 50-90,
# saving as PNG or resizing to 50-90% moves the hash by at most 4 bits (2 in 99% of images), while the nearest
# distinct faces-mini image is 6 bits away or more (8 or more for 99% of them). A 5% crop (6 bits median) or a
# mirror image (30) is not caught. imagehash's phash sets exactly 32 of its 64 bits, so distances are even: 4 and
# 5 find the same pairs.
DEFAULT_NEAR_THRESHOLD = 4
# A degenerate dataset (thousands of blank frames) would otherwise fill memory with pairs.
MAX_NEAR_PAIRS = 5_000_000
EXAMPLES = 12  # per category in summary.json (duplicates.csv has them all)
DUPLICATE_COLUMNS = (
    "kind", "group", "distance", "path_a", "path_b", "label_a", "label_b", "split_a", "split_b",
    "dataset_a", "dataset_b",
)  # fmt: skip
CATEGORIES = {
    "across_classes": "across classes",
    "across_splits": "across splits (leaks)",
    "across_datasets": "across datasets",
    "within_class": "within a class",
}
_BLOCK = 1024  # rows of one XOR + popcount block in the near-duplicate search


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):  # numpy 2
        return np.bitwise_count(x)
    as_bytes = np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.uint8)


def near_pairs(
    hashes: np.ndarray, threshold: int, max_pairs: int = MAX_NEAR_PAIRS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Every pair ``a < b`` of ``hashes`` (uint64) at most ``threshold`` bits apart: a, b, distance, and whether
    the search stopped at ``max_pairs``.

    Pigeonhole: cut the 64 bits into threshold + 1 bands; two hashes that differ in at most ``threshold`` bits
    agree exactly on at least one band. So only hashes that share a band's value are compared, each bucket as
    blocks of XOR + popcount in numpy; a pair that agrees on several bands is found several times, kept once.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    threshold = int(np.clip(threshold, 0, 63))
    empty = np.zeros(0, dtype=np.int64)
    found = [(empty, empty, np.zeros(0, dtype=np.uint8))]
    total, truncated = 0, False
    for members in _buckets(hashes, threshold):
        for pairs in _bucket_pairs(hashes, members, threshold):
            found.append(pairs)
            total += len(pairs[0])
        if truncated := total > max_pairs:
            break
    a, b, d = (np.concatenate(column) for column in zip(*found, strict=True))
    _, keep = np.unique(a * len(hashes) + b, return_index=True)
    return a[keep], b[keep], d[keep], truncated


def _buckets(hashes: np.ndarray, threshold: int) -> Iterator[np.ndarray]:
    """Band by band (threshold + 1 of them), the sorted indices of each run of two or more equal band values."""
    for lo, hi in pairwise(np.linspace(0, 64, threshold + 2).round().astype(int)):
        key = (hashes >> np.uint64(lo)) & np.uint64((1 << int(hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[starts, len(key)])
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
            yield np.sort(order[start : start + size])


def _bucket_pairs(hashes: np.ndarray, members: np.ndarray, threshold: int):
    """The close pairs of one bucket, in row blocks so a huge bucket never needs a huge matrix."""
    values = hashes[members]
    for r in range(0, len(members), _BLOCK):
        distance = popcount(values[r : r + _BLOCK, None] ^ values[None, r:])
        rows, cols = np.nonzero(distance <= threshold)
        upper = cols > rows  # cols count from r as rows do: the upper triangle, each pair once
        rows, cols = rows[upper], cols[upper]
        if len(rows):
            yield members[r + rows], members[r + cols], distance[rows, cols].astype(np.uint8)


def exact_groups(scan: Scan) -> np.ndarray:
    """Each file's exact-duplicate group (files with the same SHA-256, two or more), -1 for a unique file."""
    group = np.full(len(scan.size), -1, dtype=np.int64)
    index = np.flatnonzero(scan.hashed)
    if len(index) < 2:
        return group
    _, inverse, counts = np.unique(scan.sha[index], axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    shared = counts[inverse] > 1
    # Renumber the shared digests 0..G-1 in order of first appearance.
    _, first, dense = np.unique(inverse[shared], return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    group[index[shared]] = rank[dense.ravel()]
    return group


def _pair_categories(cols: Columns, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    split = cols.real_split()
    return {
        "across_classes": cols.label[a] != cols.label[b],
        "across_splits": (split[a] >= 0) & (split[b] >= 0) & (split[a] != split[b]),
        "across_datasets": cols.dataset[a] != cols.dataset[b],
        "within_class": cols.label[a] == cols.label[b],
    }


def _group_categories(cols: Columns, group: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """For each exact-duplicate group: does it span classes, splits, datasets; does one class hold two copies."""
    if n_groups == 0:
        return {name: np.zeros(0, dtype=bool) for name in CATEGORIES}
    members = np.flatnonzero(group >= 0)
    g = group[members]

    def distinct(values: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        keep = np.ones(len(g), bool) if keep is None else keep
        pairs = np.unique(np.stack([g[keep], values[keep]]), axis=1)
        return np.bincount(pairs[0], minlength=n_groups)

    label = cols.label[members].astype(np.int64)
    split = cols.real_split()[members]
    keys, per_class = np.unique(g * 2 + label, return_counts=True)
    return {
        "across_classes": distinct(label) > 1,
        "across_splits": distinct(split, split >= 0) > 1,
        "across_datasets": distinct(cols.dataset[members]) > 1,
        "within_class": np.isin(np.arange(n_groups), keys[per_class > 1] // 2),
    }


@dataclass
class Duplicates:
    """The exact groups and near pairs of a scan, each with its category flags (see CATEGORIES)."""

    group: np.ndarray  # exact-duplicate group of each file, -1: none
    n_groups: int
    group_categories: dict[str, np.ndarray]
    a: np.ndarray  # near pairs, sorted by distance
    b: np.ndarray
    distance: np.ndarray
    pair_categories: dict[str, np.ndarray]
    threshold: int
    truncated: bool

    def members(self) -> list[np.ndarray]:
        """The files of each exact-duplicate group, in group order."""
        members = np.flatnonzero(self.group >= 0)
        members = members[np.argsort(self.group[members], kind="stable")]
        return np.split(members, np.flatnonzero(np.diff(self.group[members])) + 1) if len(members) else []


def find_duplicates(scan: Scan, cols: Columns, threshold: int) -> Duplicates:
    group = exact_groups(scan)
    n_groups = int(group.max()) + 1 if len(group) else 0
    readable = np.flatnonzero(scan.readable)
    a, b, d, truncated = near_pairs(scan.phash[readable], threshold)
    a, b = readable[a], readable[b]
    distinct = (group[a] < 0) | (group[a] != group[b])  # byte-identical pairs are exact duplicates
    a, b, d = a[distinct], b[distinct], d[distinct]
    order = np.lexsort((b, a, d))
    a, b, d = a[order], b[order], d[order]
    return Duplicates(
        group, n_groups, _group_categories(cols, group, n_groups), a, b, d, _pair_categories(cols, a, b),
        threshold, truncated,
    )  # fmt: skip


def write_duplicates(path: Path, samples: Sequence[Sample], dups: Duplicates) -> None:
    """duplicates.csv: every exact duplicate (against the first file of its group) and every near pair."""

    def row(kind, group, distance, i, j):
        s, t = samples[i], samples[j]
        return [kind, group, distance, s.path, t.path, LABELS[s.label], LABELS[t.label], s.split, t.split,
                s.dataset, t.dataset]  # fmt: skip

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(DUPLICATE_COLUMNS)
        for g, members in enumerate(dups.members()):
            writer.writerows(row("exact", g, 0, members[0], i) for i in members[1:])
        near = zip(dups.a.tolist(), dups.b.tolist(), dups.distance.tolist(), strict=True)
        writer.writerows(row("near", "", d, i, j) for i, j, d in near)


def _file_ref(sample: Sample) -> dict:
    return {"path": sample.path, "label": LABELS[sample.label], "split": sample.split, "dataset": sample.dataset}


def duplicates_summary(samples: Sequence[Sample], dups: Duplicates) -> dict:
    """summary.json's "duplicates": counts per category, and the first examples of each."""
    members = dups.members()
    exact = {"groups": dups.n_groups, "files": int((dups.group >= 0).sum()), "categories": {}, "examples": {}}
    for name, flags in dups.group_categories.items():
        chosen = np.flatnonzero(flags)
        exact["categories"][name] = {"groups": len(chosen), "files": int(np.isin(dups.group, chosen).sum())}
        exact["examples"][name] = [[_file_ref(samples[i]) for i in members[g]] for g in chosen[:EXAMPLES]]
    crossing = dups.pair_categories["across_classes"] & dups.pair_categories["across_splits"]
    near = {"threshold": dups.threshold, "pairs": len(dups.a), "truncated": dups.truncated, "categories": {},
            "across_classes_in_two_splits": int(crossing.sum()), "examples": {}}  # fmt: skip
    for name, flags in dups.pair_categories.items():
        chosen = np.flatnonzero(flags)
        near["categories"][name] = len(chosen)
        near["examples"][name] = [
            {"a": _file_ref(samples[dups.a[k]]), "b": _file_ref(samples[dups.b[k]]), "distance": int(dups.distance[k])}
            for k in chosen[:EXAMPLES]
        ]
    return {"exact": exact, "near": near}
