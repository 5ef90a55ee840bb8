"""report.py and deepfake-report: what one or more dataset roots hold (:mod:`deepfake.report` does the work)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from deepfake.cli import positive_int, run_command
from deepfake.report.duplicates import DEFAULT_NEAR_THRESHOLD


def threshold_bits(text: str) -> int:
    """argparse type of --near-threshold: 0..63 bits."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 63:
        raise argparse.ArgumentTypeError(f"{text} must be a whole number of bits from 0 to 63")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Report on one or more labelled datasets before training on them: counts per class, split and\n"
            "dataset; image sizes, formats and JPEG quality per class; unreadable files; exact and near\n"
            "duplicates within a class, across classes, across splits (leaks) and across datasets; a sample\n"
            "grid per class; and findings in plain words. Writes report.html (opens offline: everything is\n"
            "inline), summary.json, files.csv (one row per file) and duplicates.csv into --out."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python report.py ../shared/datasets/faces-mini --out report/\n"
            "  python report.py ../shared/datasets/faces-mini ../shared/datasets/dfdc-mini --out report/\n"
            "  python report.py /data/Dataset --split-csv runs/cnn/<run>/split.csv --out report/\n"
            "  python report.py --split-csv runs/cnn/<run>/split.csv --out report/   # the run's files only\n\n"
            "ROOT takes any layout train.py reads: Real/ and Fake/ folders, a Train/Validation/Test tree, or a\n"
            "CSV manifest. A plain Real/Fake folder has no split (none is invented); --split-csv gives each file\n"
            "the split, dataset and group a run recorded, and files it does not list are 'unlisted'.\n"
            "Exit code 2 when a root, the split.csv or an option is unusable."
        ),
    )
    add = parser.add_argument
    add("roots", nargs="*", metavar="ROOT", help="dataset root: folder or CSV manifest")
    add("--out", required=True, type=Path, metavar="DIR", help="folder for report.html and the other files")
    add("--split-csv", metavar="CSV", help="a run's split.csv: the split, dataset and group of files")
    add("--manifest", metavar="NAME", help="CSV manifest inside the roots to read instead of their folders")
    add(
        "--near-threshold",
        type=threshold_bits,
        metavar="BITS",
        default=DEFAULT_NEAR_THRESHOLD,
        help="most bits two perceptual hashes (of 64) may differ in to count as near duplicates "
        f"(default: {DEFAULT_NEAR_THRESHOLD}: catches re-encodes and resizes, not distinct faces)",
    )
    workers = os.cpu_count() or 1
    add("--workers", type=positive_int, default=workers, metavar="N", help="processes that scan (default: one a core)")
    add("--samples", type=int, default=16, metavar="N", help="thumbnails per dataset and class (default: 16)")
    add("--seed", type=int, default=0, metavar="N", help="seed of the sample thumbnails (default: 0)")
    add("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """report.py's command line; its exit status."""
    args = parse_args(argv)

    def work() -> None:
        from deepfake.report import build_report, format_summary

        summary = build_report(
            args.roots,
            args.out,
            split_csv=args.split_csv,
            manifest=args.manifest,
            near_threshold=args.near_threshold,
            workers=args.workers,
            samples_per_grid=max(0, args.samples),
            seed=args.seed,
            progress=not args.no_progress,
        )
        print(format_summary(summary, args.out))

    return run_command(work)
