"""A dataset report: what one or more dataset roots hold, and what a detector could learn from besides faces.

    python report.py ../shared/datasets/faces-mini ../shared/datasets/dfdc-mini --out report/
    python report.py /data/Dataset --split-csv runs/cnn/<run>/split.csv --out report/

The flow (:func:`build_report`), a module a step:

1. :mod:`.inputs`: list the labelled files of every ROOT as :mod:`deepfake.samples` reads them, without
   inventing a split for an unsplit folder; with ``--split-csv``, a run's split.csv gives each file its split,
   dataset and group (files it does not list are "unlisted").
2. :mod:`.scan`: scan every file once in a process pool (:func:`.scan.scan_file`): byte size, format, mode and
   dimensions from the header, the JPEG quality from its quantisation tables (:func:`.scan.jpeg_quality`), the
   SHA-256 of its bytes and a perceptual hash of a DCT-scaled decode (a JPEG is decoded at 1/2 to 1/8 scale,
   which is what makes 190k images affordable). Workers send back only these small records; they stream into
   files.csv and into fixed-size numpy columns (:class:`.scan.Scan`), so memory grows by tens of bytes per
   image, never by pixels.
3. :mod:`.duplicates`: exact duplicates share a SHA-256; near duplicates are pairs whose perceptual hashes
   differ in at most ``--near-threshold`` bits, found through a pigeonhole multi-index
   (:func:`.duplicates.near_pairs`) instead of comparing every pair. Each is classed as within a class, across
   classes, across splits (a leak) and across datasets.
4. :mod:`.findings`: profiles per class (counts, sizes, formats, JPEG quality) and findings: plain sentences
   about what can mislead a model or its test score (imbalance, an attribute that differs by class,
   duplicates, leaks, unreadable files, groups in two splits).
5. :mod:`.page`: report.html (self-contained: inline CSS, inline SVG and base64 thumbnails, nothing fetched);
   here: summary.json, duplicates.csv and files.csv in ``--out``, and a short text summary on stdout.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from deepfake.report.duplicates import DEFAULT_NEAR_THRESHOLD, duplicates_summary, find_duplicates, write_duplicates
from deepfake.report.findings import all_findings, counts, groups_in_two_splits, profiles
from deepfake.report.inputs import Columns, list_inputs
from deepfake.report.page import render_html, sample_grids
from deepfake.report.scan import scan_files

__all__ = ["build_report", "main"]

_LISTED = 1000  # unreadable files listed in summary.json (files.csv has them all)


def build_report(
    roots: Sequence[str | Path],
    out: str | Path,
    *,
    split_csv: str | Path | None = None,
    manifest: str | None = None,
    near_threshold: int = DEFAULT_NEAR_THRESHOLD,
    workers: int | None = None,
    samples_per_grid: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Scan the datasets and write report.html, summary.json, files.csv and duplicates.csv into ``out``;
    returns the summary (summary.json's content)."""
    start = time.perf_counter()
    listing = list_inputs(roots, split_csv, manifest)
    samples = listing.samples
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, workers or os.cpu_count() or 1)
    result = scan_files(samples, out, workers=workers, progress=progress)
    cols = Columns.of(samples)
    dups = find_duplicates(result, cols, near_threshold)
    write_duplicates(out / "duplicates.csv", samples, dups)
    duplicates = duplicates_summary(samples, dups)
    grouping = groups_in_two_splits(samples)
    summary = {
        "roots": listing.roots,
        "split_csv": listing.split_csv,
        "files": len(samples),
        "readable": int(result.readable.sum()),
        "unreadable_count": len(result.errors),
        "findings": all_findings(samples, result, cols, duplicates, grouping, listing),
        "counts": counts(samples, result),
        "profiles": profiles(result, cols),
        "duplicates": duplicates,
        "groups": grouping,
        "unreadable": [
            {"path": samples[i].path, "reason": reason} for i, reason in list(result.errors.items())[:_LISTED]
        ],
        "timing": {
            "workers": workers,
            "scan_seconds": round(result.seconds, 3),
            "images_per_second": round(len(samples) / max(result.seconds, 1e-9), 1),
            "seconds": round(time.perf_counter() - start, 3),  # listing, scan and analysis; not the page
        },
    }
    grids = sample_grids(cols, result, samples_per_grid, seed)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render_html(summary, samples, result, grids), encoding="utf-8")
    return summary


def format_summary(summary: dict, out: Path) -> str:
    n_real = sum(r["real"] for r in summary["counts"])
    n_fake = sum(r["fake"] for r in summary["counts"])
    datasets = sorted({r["dataset"] for r in summary["counts"]})
    exact, near = summary["duplicates"]["exact"], summary["duplicates"]["near"]
    timing = summary["timing"]
    lines = [
        f"files       {summary['files']} ({n_real} real, {n_fake} fake) in {len(datasets)} dataset(s): "
        f"{', '.join(datasets)}; {summary['unreadable_count']} unreadable",
        f"duplicates  {exact['groups']} exact group(s) ({exact['files']} files), {near['pairs']} near pair(s) "
        f"within {near['threshold']} bits",
        f"speed       {summary['files']} files scanned in {timing['scan_seconds']:.1f} s: "
        f"{timing['images_per_second']:.0f} images/s with {timing['workers']} worker(s)",
        "findings" + ("" if summary["findings"] else "    none"),
        *(f"  [{f['severity']}] {f['text']}" for f in summary["findings"]),
        f"wrote report.html, summary.json, files.csv, duplicates.csv to {out}",
    ]
    return "\n".join(lines)
