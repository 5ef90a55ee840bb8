"""The infer.py command line: verdicts for image files and folders with an exported model.

Torch-free like the predictor it drives (``--explain`` imports torch and Captum when it runs).
Bad files are reported one line each on stderr and do not stop the others; the exit code is 1
when any file failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from deepfake.cli import add_scoring_options, positive_int, run_command
from deepfake.errors import UserError
from deepfake.explain import METHODS, ONNX_METHODS
from deepfake.images import IMAGE_SUFFIXES, list_files, read_image
from deepfake.predictor import FACES_OPTIONS, Predictor, default_model_path, verdict
from deepfake.preprocess import DEFAULT_THRESHOLD
from deepfake.video import DEFAULT_FRAMES, VIDEO_SUFFIXES, is_video_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Tell real face images from generated ones with an exported ONNX model.",
        epilog=(
            "Output: one line per file, 'file<TAB>label<TAB>p_fake', where p_fake is the probability "
            "that it is fake and label is 'fake' when p_fake >= threshold. With a model trained on faces, every face "
            "is judged and an image is as fake as its most fake face (indented lines list the faces when there are "
            "several); a video scores the mean over its sampled frames with a face (indented lines: one per frame). "
            "Folders are searched recursively for "
            f"{', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))} files. Exit code 1 when any file failed. "
            "--explain also writes <stem>.<method>.png into --out: the image with a heatmap of where the model "
            "found its evidence of 'fake' (red: most). Examples: infer.py --explain occlusion --out heat/ img.jpg; "
            "infer.py --explain gradcam --ckpt runs/hfnet/<run> --out heat/ img.jpg"
        ),
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="FILE_OR_FOLDER", help="images, videos (recognised by content) and/or folders"
    )
    parser.add_argument(
        "--onnx",
        type=Path,
        default=None,
        help=f"model file from export.py (default: the bundled model, {default_model_path()}, or $DEEPFAKE_MODEL)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print JSON lines {"file", "label", "p_fake", "confidence", "verdict", "faces": [{"box": [x, y, w, h], '
        '"p_fake", "label", "verdict", ...}], "face_found", "note"}, and for videos "frames": [{"index", "time_s", '
        '"p_fake", "faces"}]; verdict is likely_fake (p_fake >= threshold), likely_real (below the model\'s lower '
        "threshold) or uncertain (between them)",
    )
    parser.add_argument(
        "--faces",
        choices=tuple(FACES_OPTIONS),
        default="auto",
        help="find and judge every face first: auto (default) when the model was trained on faces; off for images "
        "that are already face crops; on even for a whole-image model",
    )
    parser.add_argument(
        "--frames",
        type=positive_int,
        default=DEFAULT_FRAMES,
        help="frames judged per video, evenly spaced (default %(default)s)",
    )
    add_scoring_options(parser, batch_size=32)
    parser.add_argument(
        "--explain",
        choices=METHODS,
        default=None,
        help="also write a heatmap per image: occlusion (any model), attention (attention-head models), "
        "gradcam or ig (need --ckpt)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="folder for the --explain PNGs (created if missing)"
    )
    parser.add_argument(
        "--ckpt",
        type=Path,
        default=None,
        metavar="PATH",
        help="explain a training checkpoint (.ckpt, or a run directory: its best checkpoint) instead of an ONNX "
        "file; required by gradcam and ig, which follow gradients. Read with weights_only=True",
    )
    args = parser.parse_args(argv)
    if args.explain and args.out is None:
        parser.error(f"--explain {args.explain} needs --out DIR, the folder for its PNGs")
    if not args.explain and (args.out is not None or args.ckpt is not None):
        parser.error(f"{'--out' if args.out is not None else '--ckpt'} is only used with --explain")
    if args.ckpt is not None and args.onnx is not None:
        parser.error("give --onnx or --ckpt, not both: --explain runs on one model")
    if args.explain and args.explain not in ONNX_METHODS and args.ckpt is None:
        parser.error(
            f"--explain {args.explain} needs --ckpt PATH (a .ckpt or run directory): it follows gradients, "
            f"which an ONNX file does not have; with --onnx use {' or '.join(ONNX_METHODS)}"
        )
    return args


def expand(inputs: list[str]) -> Iterator[tuple[str, str | None]]:
    """(path, problem) for every file named or found in a folder; problem is None when it can be tried."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = False
            for file in list_files(path, IMAGE_SUFFIXES | VIDEO_SUFFIXES):
                found = True
                yield file, None
            if not found:
                yield item, "folder holds no image or video files"
        elif path.is_file():
            yield item, None
        else:
            yield item, "no such file or folder"


def report_error(file: str, message: str) -> None:
    print(f"error: {file}: {message}", file=sys.stderr)


def print_prediction(file: str, pred, as_json: bool) -> None:
    """One line per file; in text, indented lines follow for each face of an image with several and each
    sampled frame of a video (--json has them all, always)."""
    if as_json:
        print(json.dumps({"file": file, **pred.to_dict()}))
        return
    print(f"{file}\t{pred.label}\t{pred.p_fake:.4f}")
    if pred.note:
        print(f"  note: {pred.note}")
    if len(pred.faces) > 1:
        for k, face in enumerate(pred.faces, 1):
            print(f"  face {k} at {face.box}\t{face.label}\t{face.p_fake:.4f}")
    for frame in getattr(pred, "frames", ()):
        score = "no face" if frame.p_fake is None else f"{frame.p_fake:.4f}"
        boxes = " ".join(str(face.box) for face in frame.faces)
        print(f"  frame {frame.index} at {frame.time_s:.2f}s\t{score}\t{boxes}".rstrip())


def run(args: argparse.Namespace) -> int:
    if args.explain:
        return run_explain(args)
    faces = FACES_OPTIONS[args.faces]
    predictor = Predictor(args.onnx, threshold=args.threshold)
    failed = 0
    pending: list[tuple[str, tuple]] = []  # (file, its faces and model inputs)

    def flush() -> None:
        predictions = predictor.judge_all([prepared for _, prepared in pending], args.batch_size)
        for (file, _), prediction in zip(pending, predictions, strict=True):
            print_prediction(file, prediction, args.json)
        sys.stdout.flush()
        pending.clear()

    for file, problem in expand(args.inputs):
        if problem is None:
            try:
                if is_video_file(file):
                    if pending:  # keep the output in input order
                        flush()
                    print_prediction(file, predictor.predict_video(file, args.frames, faces=faces), args.json)
                    sys.stdout.flush()
                    continue
                # Faces found and preprocessed here, per file, so one bad image is reported alone and the batch
                # holds model inputs only, not decoded images.
                pending.append((file, predictor.inputs(read_image(file), faces)))
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


def run_explain(args: argparse.Namespace) -> int:
    """Verdict lines as without --explain, one image at a time, and a heatmap PNG per image in args.out."""
    from deepfake import explain

    method = args.explain
    if args.ckpt is not None:
        from deepfake.training.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(args.ckpt)
        threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold  # checkpoints carry none

        def explain_one(image):
            return explain.explain_checkpoint(checkpoint, image, method)

        def judge(p: float):
            return verdict(p, threshold)
    else:
        predictor = Predictor(args.onnx, threshold=args.threshold)
        explain.check_onnx_method(predictor, method)  # before any file: an unusable method is one error, exit 2
        judge = predictor.verdict

        def explain_one(image):
            return explain.explain_onnx(predictor, image, method)

    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot create the folder: {exc.strerror or exc}") from exc
    failed, used = 0, set()
    for file, problem in expand(args.inputs):
        if problem is None:
            try:
                explanation = explain_one(read_image(file))
            except UserError as exc:
                problem = str(exc)
        if problem is not None:
            failed += 1
            report_error(file, problem)
            continue
        target = unique_path(args.out, Path(file).stem, method, used)
        target.write_bytes(explanation.png())
        pred = judge(explanation.p_fake)
        if args.json:
            print(json.dumps({"file": file, **pred.to_dict(), "explanation": str(target)}))
        else:
            print(f"{file}\t{pred.label}\t{pred.p_fake:.4f}")
        sys.stdout.flush()
    print(f"{len(used)} {method} heatmap(s) in {args.out}", file=sys.stderr)
    return 1 if failed else 0


def unique_path(folder: Path, stem: str, method: str, used: set[str]) -> Path:
    """<stem>.<method>.png, or <stem>-2.<method>.png, ... when an earlier input of this run had the same stem."""
    name, n = f"{stem}.{method}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.{method}.png"
    used.add(name)
    return folder / name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run_command(lambda: run(args), "infer.py --explain" if args.explain else None)
    except BrokenPipeError:  # e.g. piped into head: stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # python -m deepfake.commands.infer
    sys.exit(main())
