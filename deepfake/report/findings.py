"""What the scan says about the data: files per dataset, split and class; a profile of each class (sizes, formats,
colour modes, JPEG quality); groups in two splits; and findings, plain sentences about what can mislead a model
or its test score (imbalance, an attribute that differs by class, duplicates, leaks, unreadable files)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from deepfake.preprocess import LABELS
from deepfake.report.duplicates import EXAMPLES, MAX_NEAR_PAIRS
from deepfake.report.inputs import UNLISTED, Columns, Listing
from deepfake.report.scan import Scan
from deepfake.samples import SPLITS, Sample

# A class ratio above this is an imbalance; an attribute is reported when a rule on it alone tells the classes
# apart with balanced accuracy 0.5 + TVD/2 of at least 55%, and beyond sampling noise.
_IMBALANCE = 1.5
_MIN_TVD = 0.1
_NOISE_FACTOR = 3.0
_SEVERITY = ("high", "medium", "info")
# Bands of the short side, to compare classes on when they hold too many distinct sizes.
_SHORT_SIDES = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
_BANDS = np.array([f"short side {lo}-{hi - 1}" for lo, hi in pairwise((0, *_SHORT_SIDES))] + ["short side 2048+"])


# ---------------------------------------------------------------------------
# Counts and profiles


def counts(samples: Sequence[Sample], scan: Scan) -> list[dict]:
    """Files per dataset, split and class, and how many could not be read."""
    table: dict[tuple[str, str], dict] = defaultdict(lambda: {"real": 0, "fake": 0, "unreadable": 0})
    for s, readable in zip(samples, scan.readable.tolist(), strict=True):
        row = table[(s.dataset, s.split)]
        row[LABELS[s.label]] += 1
        row["unreadable"] += not readable
    order = {name: k for k, name in enumerate((*SPLITS, "", UNLISTED))}
    keys = sorted(table, key=lambda k: (k[0], order.get(k[1], len(order)), k[1]))
    return [{"dataset": d, "split": sp, **table[(d, sp)]} for d, sp in keys]


def groups_in_two_splits(samples: Sequence[Sample]) -> dict:
    """Groups (a source video, a person) whose images sit in more than one train/val/test split."""
    splits: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in samples:
        if s.group and s.split in SPLITS:
            splits[(s.dataset, s.group)].add(s.split)
    spread = sorted(k for k, v in splits.items() if len(v) > 1)
    return {
        "groups": len(splits),
        "in_two_splits": len(spread),
        "examples": [{"dataset": d, "group": g, "splits": sorted(splits[(d, g)])} for d, g in spread[:EXAMPLES]],
    }


def _counter(values: np.ndarray) -> dict:
    """Counts of each value, most common first."""
    keys, counts = np.unique(values, return_counts=True)
    return {str(k): int(c) for k, c in sorted(zip(keys, counts, strict=True), key=lambda kc: (-kc[1], str(kc[0])))}


def _size_keys(scan: Scan, index: np.ndarray) -> np.ndarray:
    return np.char.add(np.char.add(scan.width[index].astype(str), "x"), scan.height[index].astype(str))


def class_profile(scan: Scan, index: np.ndarray) -> dict:
    """Counts, formats, modes, sizes and JPEG quality of the files at ``index`` (one class of one scope)."""
    readable = index[scan.readable[index]]
    jpeg = readable[scan.quality[readable] >= 0]
    sizes = _counter(_size_keys(scan, readable))
    quality = scan.quality[jpeg]
    return {
        "files": len(index),
        "unreadable": len(index) - len(readable),
        "formats": _counter(scan.format_names(readable)),
        "modes": _counter(scan.mode_names(readable)),
        "sizes": dict(list(sizes.items())[:10]),
        "distinct_sizes": len(sizes),
        "mean_kb": round(float(scan.size[readable].mean()) / 1024, 1) if len(readable) else None,
        "jpeg_quality": {
            "jpegs": len(jpeg),
            "median": float(np.median(quality)) if len(jpeg) else None,
            "histogram": {str(q): int(c) for q, c in zip(*np.unique(quality, return_counts=True), strict=True)},
            "nonstandard_tables": int((scan.standard[jpeg] == 0).sum()),
        },
    }


def profiles(scan: Scan, cols: Columns) -> dict:
    return {
        scope: {LABELS[label]: class_profile(scan, index[cols.label[index] == label]) for label in (0, 1)}
        for scope, index in cols.scopes().items()
    }


# ---------------------------------------------------------------------------
# Findings


def _finding(severity: str, kind: str, text: str, **details) -> dict:
    return {"severity": severity, "kind": kind, "text": text, **details}


def separability(a: dict, b: dict) -> tuple[float, float]:
    """Total variation distance between two count tables, and the distance expected from sampling alone were
    both drawn from their pooled distribution (normal approximation of each share's difference)."""
    keys = sorted(set(a) | set(b))
    ca = np.array([a.get(k, 0) for k in keys], dtype=float)
    cb = np.array([b.get(k, 0) for k in keys], dtype=float)
    na, nb = ca.sum(), cb.sum()
    if not na or not nb:
        return 0.0, 0.0
    tvd = 0.5 * np.abs(ca / na - cb / nb).sum()
    pooled = (ca + cb) / (na + nb)
    noise = 0.5 * np.sqrt(2 / np.pi * pooled * (1 - pooled) * (1 / na + 1 / nb)).sum()
    return float(tvd), float(noise)


def _attribute_tables(scan: Scan, index: np.ndarray) -> dict[str, dict]:
    """Per attribute, the count table a class is compared on (readable files only)."""
    readable = index[scan.readable[index]]
    sizes = _size_keys(scan, readable)
    if len(set(sizes.tolist())) > 50:
        # Many distinct sizes: exact sizes would all differ by chance; compare the short side in bands.
        short = np.minimum(scan.width[readable], scan.height[readable])
        sizes = _BANDS[np.searchsorted(_SHORT_SIDES, short, side="right")]
    quality = scan.quality[readable]
    return {
        "image size": _counter(sizes),
        "format": _counter(scan.format_names(readable)),
        "colour mode": _counter(scan.mode_names(readable)),
        "JPEG quality": _counter(np.where(quality >= 0, quality.astype(str), "not JPEG")),
    }


def _describe_counts(table: dict, unit=lambda k: k) -> str:
    total = sum(table.values()) or 1
    top = sorted(table.items(), key=lambda kc: -kc[1])[:2]
    return ", ".join(f"{unit(k)} ({c / total:.0%})" for k, c in top)


def attribute_findings(scan: Scan, cols: Columns) -> list[dict]:
    found = []
    for scope, index in cols.scopes().items():
        real = _attribute_tables(scan, index[cols.label[index] == 0])
        fake = _attribute_tables(scan, index[cols.label[index] == 1])
        for what in real:
            tvd, noise = separability(real[what], fake[what])
            if tvd < _MIN_TVD or tvd < _NOISE_FACTOR * noise:
                continue
            unit = (lambda k: k if k == "not JPEG" else f"q={k}") if what == "JPEG quality" else (lambda k: k)
            text = (
                f"{scope}: real and fake differ in {what}: real {_describe_counts(real[what], unit)}; "
                f"fake {_describe_counts(fake[what], unit)}. {what[0].upper() + what[1:]} alone tells them apart "
                f"with up to {0.5 + tvd / 2:.0%} balanced accuracy, which a model can learn instead of the faces."
            )
            severity = "high" if tvd >= 0.5 else "medium"
            found.append(_finding(severity, "class_attribute", text, scope=scope, attribute=what, tvd=round(tvd, 3)))
    return found


def balance_findings(cols: Columns) -> list[dict]:
    found = []
    for scope, index in cols.scopes().items():
        n_real, n_fake = int((cols.label[index] == 0).sum()), int((cols.label[index] == 1).sum())
        if min(n_real, n_fake) == 0:
            missing = "real" if n_real == 0 else "fake"
            found.append(_finding("high", "missing_class", f"{scope}: no {missing} images at all.", scope=scope))
        elif (ratio := max(n_real, n_fake) / min(n_real, n_fake)) >= _IMBALANCE:
            text = (
                f"{scope}: class imbalance, {n_real} real vs {n_fake} fake ({ratio:.1f}:1). Accuracy then rewards "
                "guessing the larger class: judge by balanced accuracy or AUROC, or rebalance."
            )
            found.append(_finding("medium", "imbalance", text, scope=scope))
    split = cols.real_split()
    for code in sorted(set(split[split >= 0].tolist())):
        labels = set(cols.label[split == code].tolist())
        if len(labels) < 2:
            name, missing = cols.splits[code], LABELS[1 - labels.pop()]
            found.append(_finding("high", "missing_class", f"the {name} split has no {missing} images.", scope=name))
    return found


# Why each kind of duplicate matters: (severity, for exact copies, for near duplicates).
_DUPLICATE_WHY = {
    "across_classes": (
        "high",
        "byte-identical files labelled both real and fake: one of the labels is wrong",
        "real and fake images that are nearly the same picture: a fake made from that real frame, or a copy "
        "under the wrong label",
    ),
    "across_splits": (
        "high",
        "byte-identical files in two splits: a leak, the test score partly measures memory",
        "nearly the same picture in two splits: a leak, the test score partly measures memory",
    ),
    "across_datasets": (
        "medium",
        "byte-identical files in two datasets: a cross-dataset test is not independent",
        "nearly the same picture in two datasets: a cross-dataset test is not independent",
    ),
    "within_class": (
        "info",
        "byte-identical copies within one class: they inflate the counts",
        "nearly the same picture twice within one class: they inflate the counts",
    ),
}


def duplicate_findings(summary: dict, have_splits: bool) -> list[dict]:
    exact, near = summary["exact"], summary["near"]
    found = []
    for name, (severity, exact_why, near_why) in _DUPLICATE_WHY.items():
        if name == "across_classes":
            tail = _across_classes_advice(near, have_splits)
        elif name == "within_class" and not have_splits:
            # Unsplit data is split by file at training time: copies then land in train and test.
            tail = ", and land in two splits when the data is split by file"
        else:
            tail = ""
        groups = exact["categories"][name]
        if groups["groups"]:
            first = exact["examples"][name][0]
            text = (
                f"{groups['groups']} group(s) of {exact_why}{tail} ({groups['files']} files), "
                f"e.g. {first[0]['path']} = {first[1]['path']}."
            )
            found.append(_finding(severity, f"exact_{name}", text))
        if near["categories"][name]:
            pair = near["examples"][name][0]
            text = (
                f"{near['categories'][name]} near-duplicate pair(s) (perceptual hashes within {near['threshold']} "
                f"bits): {near_why}{tail}. E.g. {pair['a']['path']} ~ {pair['b']['path']} ({pair['distance']} bits)."
            )
            found.append(_finding(severity, f"near_{name}", text))
    if near["truncated"]:
        text = (
            f"The near-duplicate search stopped after {MAX_NEAR_PAIRS} pairs: the counts are lower bounds "
            "(lower --near-threshold)."
        )
        found.append(_finding("info", "near_truncated", text))
    return found


def _across_classes_advice(near: dict, have_splits: bool) -> str:
    if not have_splits:
        return (
            ". Keep each pair in one split (split by source), or the test score rewards remembering the picture "
            "instead of telling real from fake"
        )
    crossing = near["across_classes_in_two_splits"]
    return f"; {crossing} of these pairs sit in two splits" if crossing else "; each pair sits in one split"


def unreadable_findings(samples: Sequence[Sample], scan: Scan) -> list[dict]:
    if not scan.errors:
        return []
    kinds = Counter(reason.split(" (")[0] for reason in scan.errors.values())
    i, reason = next(iter(scan.errors.items()))
    text = (
        f"{len(scan.errors)} file(s) cannot be read ({', '.join(f'{n} {k}' for k, n in kinds.most_common())}), "
        f"e.g. {samples[i].path}: {reason}. Training skips or fails on them: remove or replace them."
    )
    return [_finding("high", "unreadable", text)]


def other_findings(scan: Scan, grouping: dict, listing: Listing) -> list[dict]:
    found = []
    if grouping["in_two_splits"]:
        example = grouping["examples"][0]
        text = (
            f"{grouping['in_two_splits']} of {grouping['groups']} groups have images in more than one split "
            f"(e.g. {example['group']} in {', '.join(example['splits'])}): the test set shares sources with "
            "training. Split by group (data.group_by=...)."
        )
        found.append(_finding("high", "groups_in_two_splits", text))
    if nonstandard := int((scan.standard == 0).sum()):
        text = (
            f"{nonstandard} JPEG(s) use quantisation tables other than the standard (IJG) ones: their quality is the "
            "nearest standard match."
        )
        found.append(_finding("info", "nonstandard_jpeg", text))
    if listing.split_csv and listing.split_csv_absent:
        text = f"{listing.split_csv_absent} file(s) of {listing.split_csv} are under none of the roots given."
        found.append(_finding("info", "split_csv_absent", text))
    unlisted = sum(s.split == UNLISTED for s in listing.samples)
    if listing.split_csv and unlisted:
        found.append(_finding("info", "unlisted", f"{unlisted} file(s) under the roots are not in the split.csv."))
    return found


def all_findings(samples, scan: Scan, cols: Columns, duplicates: dict, grouping: dict, listing: Listing) -> list[dict]:
    """Every finding, the most severe first."""
    have_splits = bool((cols.real_split() >= 0).any())
    found = [
        *unreadable_findings(samples, scan),
        *balance_findings(cols),
        *attribute_findings(scan, cols),
        *duplicate_findings(duplicates, have_splits),
        *other_findings(scan, grouping, listing),
    ]
    return sorted(found, key=lambda f: _SEVERITY.index(f["severity"]))
