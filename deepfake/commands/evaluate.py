"""evaluate.py and deepfake-evaluate: a detector on a labelled dataset, or every model on every dataset.

The work is :mod:`deepfake.evaluate`'s; this module parses the options and prints what it returns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake.cli import add_scoring_options, run_command
from deepfake.predictor import default_model_path
from deepfake.samples import SPLIT, SPLITS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:

    parser = argparse.ArgumentParser(
        description=(
            "Evaluate a real/fake detector on a labelled dataset: accuracy, precision, recall, F1, ROC AUC,\n"
            "average precision, EER, expected calibration error (ECE), confusion matrix and per-class report;\n"
            "with --robustness, the same under JPEG, blur, downscaling and noise. Prints the tables and writes\n"
            "metrics.json, roc.png, confusion_matrix.png and calibration.png (the reliability diagram), and with\n"
            "--robustness robustness.json, robustness.md and robustness.png, into --out.\n\n"
            "With several --model or --data: every model on every dataset, the way DeepfakeBench reports\n"
            "detectors. Writes cross_dataset.csv (rows: models; columns: each dataset's ROC AUC, then its\n"
            "accuracy and EER), cross_dataset.png (the AUROC heatmap) and cross_dataset.json (every figure)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python evaluate.py --model models/default.onnx --data ../shared/datasets/faces-mini --split test "
            "--out eval/\n"
            "  python evaluate.py --model runs/cnn/<run>/checkpoints/last.ckpt --data /data/Dataset --out eval/\n"
            "  python evaluate.py --model model.onnx --data other_dataset/ --out robust/ --robustness\n"
            "  python evaluate.py --model runs/faces_only --model runs/dfdc_only \\\n"
            "      --data ../shared/datasets/faces-mini --data ../shared/datasets/dfdc-mini \\\n"
            "      --split test --out cross/\n\n"
            "--data takes any layout train.py reads: Real/ and Fake/ folders, a Train/Validation/Test tree, or\n"
            "a CSV manifest file,label[,split]; a folder's metadata.csv (or manifest.csv) is read as its manifest.\n"
            "Without --split every image is used. --split test takes the test split a model was trained with:\n"
            "from its run's split.csv (a run directory or checkpoint), else made again from the data settings its\n"
            "ONNX metadata records and checked against their digest; a dataset no model trained on is split as\n"
            "training would split it (--seed, --group-by). In a cross table every model sees the same images.\n"
            "A checkpoint or run directory is exported to a temporary ONNX file first, so it is scored exactly\n"
            "as its export would be. Exit code 2 when the model, data or an option is unusable."
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        help="ONNX file from export.py, .ckpt from train.py, or a run directory; repeat for a cross-dataset "
        f"table (default: {default_model_path()})",
    )
    parser.add_argument(
        "--data", action="append", required=True, help="dataset root, folder or CSV manifest; repeat for a table"
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="only this split: the one the model was trained with when it was trained on the dataset (default: all)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the results and the pictures")
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="also score under each perturbation of configs/robustness.yaml (JPEG quality 90/70/50, Gaussian blur "
        "sigma 1/2, downscale by half and back, Gaussian noise, framed in a blurred copy); one --model and one "
        "--data only",
    )
    parser.add_argument(
        "--perturbations",
        metavar="YAML",
        default=None,
        help="with --robustness: another perturbation set, written as configs/robustness.yaml is",
    )
    add_scoring_options(parser, batch_size=64)
    parser.add_argument("--manifest", default=None, help="manifest file in each --data folder (default: metadata.csv)")
    parser.add_argument(
        "--group-by",
        default=None,
        help="manifest column to split by, for data no model was trained on (as train.py's data.group_by)",
    )
    parser.add_argument(
        "--seed", type=int, default=SPLIT.seed, help=f"seed of the split of a plain folder (training's: {SPLIT.seed})"
    )
    args = parser.parse_args(argv)
    args.model = args.model or [None]
    if args.robustness and (len(args.model) > 1 or len(args.data) > 1):
        parser.error("--robustness takes one --model and one --data")
    if args.perturbations and not args.robustness:
        parser.error("--perturbations goes with --robustness")
    return args


def main(argv: list[str] | None = None) -> int:
    """evaluate.py's exit status."""
    return run_command(lambda: run(parse_args(argv)))


def run(args: argparse.Namespace) -> None:
    from deepfake.evaluate import cross_evaluate, evaluate
    from deepfake.evaluate.tables import format_cross_evaluation, format_evaluation, format_skipped

    options = dict(
        split=args.split,
        threshold=args.threshold,
        seed=args.seed,
        batch_size=args.batch_size,
        manifest=args.manifest,
        group_by=args.group_by,
    )

    if len(args.model) == 1 and len(args.data) == 1:
        from deepfake.robustness import read_perturbations

        robustness = read_perturbations(args.perturbations) if args.robustness else False
        result = evaluate(args.model[0], args.data[0], args.out, robustness=robustness, **options)
        skipped = [(f["path"], f["reason"]) for f in result.metrics["skipped_files"]]
        if skipped:
            print(format_skipped(skipped), file=sys.stderr)
        print(format_evaluation(result.metrics, result.out, result.written, result.robustness))
    else:
        result = cross_evaluate(args.model, args.data, args.out, **options)
        for row in result["cells"].values():
            for cell in row.values():
                if cell["skipped_files"]:
                    print(format_skipped([(f["path"], f["reason"]) for f in cell["skipped_files"]]), file=sys.stderr)
        print(format_cross_evaluation(result, args.out))
