"""The infer.py command line: verdicts for image files and folders with an exported model.

Torch-free like the predictor it drives. Bad files are reported one line each on
stderr and do not stop the others; the exit code is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from deepfake.errors import UserError
from deepfake.predictor import Predictor, default_model_path
from deepfake.preprocess import IMAGE_SUFFIXES, read_image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="infer.py",
        description="Tell real face images from generated ones with an exported ONNX model.",
        epilog=(
            "Output: one line per image, 'file<TAB>label<TAB>p_fake', where p_fake is the probability "
            "that the image is fake and label is 'fake' when p_fake >= threshold. Folders are searched "
            f"recursively for {', '.join(sorted(IMAGE_SUFFIXES))} files. Exit code 1 when any file failed."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders")
    parser.add_argument(
        "--onnx",
        type=Path,
        default=None,
        help=f"model file from export.py (default: the bundled model, {default_model_path()}, or $DEEPFAKE_MODEL)",
    )
    parser.add_argument("--json", action="store_true", help='print JSON lines {"file", "label", "p_fake", ...}')
    parser.add_argument(
        "--threshold", type=float, default=None, help="decision threshold on p_fake (default: the one in the model)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per onnxruntime call (default: 32)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size} must be at least 1")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        parser.error(f"--threshold {args.threshold} must be strictly between 0 and 1")
    return args


def expand(inputs: list[str]) -> Iterator[tuple[str, str | None]]:
    """(path, problem) for every file named or found in a folder; problem is None when it can be tried."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = False
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                        found = True
                        yield os.path.join(dirpath, name), None
            if not found:
                yield item, "folder holds no image files"
        elif path.is_file():
            yield item, None
        else:
            yield item, "no such file or folder"


def report_error(file: str, message: str) -> None:
    print(f"error: {file}: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    predictor = Predictor(args.onnx, threshold=args.threshold)
    failed = 0
    pending: list[tuple[str, object]] = []

    def flush() -> None:
        predictions = predictor.predict_batch([image for _, image in pending], batch_size=args.batch_size)
        for (file, _), pred in zip(pending, predictions, strict=True):
            if args.json:
                print(json.dumps({"file": file, **pred.to_dict()}))
            else:
                print(f"{file}\t{pred.label}\t{pred.p_fake:.4f}")
        sys.stdout.flush()
        pending.clear()

    for file, problem in expand(args.inputs):
        if problem is None:
            try:
                # Preprocess here, per file, so one bad image is reported alone and the batch goes on.
                pending.append((file, predictor.preprocess.resize(read_image(file))))
            except UserError as exc:
                problem = str(exc)
        if problem is not None:
            failed += 1
            report_error(file, problem)
        if len(pending) >= args.batch_size:
            flush()
    if pending:
        flush()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into head: stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
