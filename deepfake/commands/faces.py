"""python -m deepfake.faces SRC DST: the face crops of a folder of images or videos, in the same layout.

The crops are cut exactly as training with ``data.faces=blazeface`` (or ``dlib``) and the predictor cut them, so what is
written here is what a model sees (before its resize). Torch-free.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path

from tqdm.auto import tqdm

from deepfake.cli import positive_int, run_command
from deepfake.errors import UserError
from deepfake.faces.detect import DETECTORS, FaceStage, face_crops
from deepfake.images import IMAGE_SUFFIXES, encode_image, list_files, read_image
from deepfake.video import DEFAULT_FRAMES, VIDEO_SUFFIXES, is_video_file, sample_frames


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = FaceStage()
    parser = argparse.ArgumentParser(
        prog="python -m deepfake.faces",
        description="Write the face crops of every image (and N frames of every video) under SRC into DST, "
        "keeping the folder layout (Real/, Fake/, Train/Real/, ...). One PNG per face: <name>.png for the "
        "largest, <name>_face2.png, ... for the others with --all-faces; videos give <name>_f<frame>.png. "
        "Files without a face are listed in DST/no_face.txt.",
    )
    parser.add_argument("src", type=Path, metavar="SRC", help="folder of images and/or videos (searched recursively)")
    parser.add_argument("dst", type=Path, metavar="DST", help="output folder (created; existing crops are replaced)")
    parser.add_argument(
        "--frames", type=positive_int, default=DEFAULT_FRAMES, help="frames per video (default %(default)s)"
    )
    parser.add_argument("--all-faces", action="store_true", help="every face, not only the largest")
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        default=defaults.detector,
        help="face detector (default %(default)s; dlib_hog: the HOG detector of older models)",
    )
    for field in fields(FaceStage):
        if field.name != "detector":
            parser.add_argument(
                f"--{field.name.replace('_', '-')}",
                type=type(getattr(defaults, field.name)),
                default=getattr(defaults, field.name),
                help="face stage setting (default %(default)s; see configs/data/default.yaml)",
            )
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes (default: cores)")
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        parser.error(f"SRC {args.src}: no such folder")
    return args


def _crop_file(task: tuple[str, Path, FaceStage, int, bool]) -> tuple[str, int, str | None]:
    """(file, faces written, problem) for one image or video."""
    import cv2

    cv2.setNumThreads(0)  # not 1: see deepfake.faces.pool._in_worker
    path, out_stem, stage, frames, all_faces = task
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        if Path(path).suffix.lower() in VIDEO_SUFFIXES and is_video_file(path):
            for frame in sample_frames(path, frames):
                written += _write(
                    face_crops(frame.rgb, stage), out_stem.with_name(f"{out_stem.name}_f{frame.index:06d}"), all_faces
                )
        else:
            written += _write(face_crops(read_image(path), stage), out_stem, all_faces)
    except (UserError, OSError) as exc:
        return path, written, str(exc)
    return path, written, None


def _write(found, stem: Path, all_faces: bool) -> int:
    written = found if all_faces else found[:1]
    for k, (_, crop) in enumerate(written, start=1):
        name = stem.name if k == 1 else f"{stem.name}_face{k}"
        stem.with_name(name + ".png").write_bytes(encode_image(crop, ".png"))
    return len(written)


def run(args: argparse.Namespace) -> int:
    stage = FaceStage(**{f.name: getattr(args, f.name) for f in fields(FaceStage)})
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files = list(list_files(args.src, suffixes))
    if not files:
        raise UserError(f"{args.src} holds no image or video files ({', '.join(sorted(suffixes))})")
    tasks = [
        (f, args.dst / Path(f).relative_to(args.src).with_suffix(""), stage, args.frames, args.all_faces) for f in files
    ]
    per_folder, no_face, failed = Counter(), [], 0
    with ProcessPoolExecutor(args.workers) as pool:
        for path, written, problem in tqdm(
            pool.map(_crop_file, tasks, chunksize=8), total=len(tasks), desc="Cropping", unit="file"
        ):
            folder = str(Path(path).parent.relative_to(args.src))
            if problem:
                failed += 1
                print(f"error: {path}: {problem}", file=sys.stderr)
            elif written == 0:
                no_face.append(path)
            per_folder[folder, written > 0] += 1
    args.dst.mkdir(parents=True, exist_ok=True)
    (args.dst / "no_face.txt").write_text("".join(f"{p}\n" for p in no_face))
    for folder in sorted({f for f, _ in per_folder}):
        found, total = per_folder[folder, True], per_folder[folder, True] + per_folder[folder, False]
        print(f"{folder}: a face in {found} of {total} files ({100 * found / max(total, 1):.1f}%)")
    print(f"crops in {args.dst}; {len(no_face)} file(s) without a face listed in {args.dst / 'no_face.txt'}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
