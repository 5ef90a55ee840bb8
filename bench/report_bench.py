"""Speed and memory of the dataset report (deepfake.report), and the perceptual-hash distances its default
near-duplicate threshold rests on.

    python bench/report_bench.py                                  # faces-mini: 1 and 2 workers, then memory
    python bench/report_bench.py ../shared/datasets/dfdc-mini --workers 1,2 --scale 4
    python bench/report_bench.py --distances                      # phash distances: distinct images vs copies

Speed: the whole report on ROOT, once per worker count, each in a fresh process; images/s counts the scan
(reading, hashing, decoding) over the files. Memory: the report on a folder of N images and on one of
scale x N (ROOT's files linked, plus re-encoded copies at other JPEG qualities, so the copies are near
duplicates as a real dataset's would be), with the peak RSS of the main process and of the largest worker:
it grows by the small per-file records only, never by the pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake.report import build_report  # noqa: E402
from deepfake.report.duplicates import popcount  # noqa: E402
from deepfake.report.scan import perceptual_hash  # noqa: E402
from deepfake.samples import list_samples  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "faces-mini"


def one_run(root: str, workers: int) -> dict:
    """The report on ``root`` in this process: its speed and the peak RSS of this process and its workers."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = build_report([root], out, workers=workers, progress=False)
        wall = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "files": summary["files"],
        "workers": workers,
        "images_per_second": summary["timing"]["images_per_second"],
        "scan_seconds": summary["timing"]["scan_seconds"],
        "total_seconds": round(wall, 2),
        "peak_rss_main_mb": round(own, 1),
        "peak_rss_worker_mb": round(children, 1),
    }


def in_fresh_process(root: str | Path, workers: int) -> dict:
    """one_run in a new interpreter, so that no earlier run's peak RSS counts."""
    command = [sys.executable, __file__, str(root), "--one", "--workers", str(workers)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaled_copy(root: Path, scale: int, out: Path) -> Path:
    """ROOT's files linked (copy 0) and re-encoded at JPEG quality 90, 80, ... (copies 1..scale-1)."""
    samples, _ = list_samples(root)
    for sample in samples:
        folder = out / ("Fake" if sample.label else "Real")
        folder.mkdir(parents=True, exist_ok=True)
        name = Path(sample.path).name
        os.symlink(sample.path, folder / f"c0_{name}")
        if scale > 1:
            image = cv2.imread(sample.path)
            for k in range(1, scale):
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100 - 10 * k])
                (folder / f"c{k}_{Path(name).stem}.jpg").write_bytes(buf.tobytes())
    return out


def speed(root: Path, workers: list[int]) -> None:
    runs = [in_fresh_process(root, w) for w in workers]
    print(f"\nspeed on {root} ({runs[0]['files']} files), {os.cpu_count()} cores")
    print(f"{'workers':>8} {'images/s':>9} {'scan s':>7} {'total s':>8} {'main MB':>8} {'worker MB':>10}")
    for r in runs:
        print(
            f"{r['workers']:>8} {r['images_per_second']:>9.0f} {r['scan_seconds']:>7.1f} {r['total_seconds']:>8.1f} "
            f"{r['peak_rss_main_mb']:>8.0f} {r['peak_rss_worker_mb']:>10.0f}"
        )


def memory(root: Path, scale: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        small = in_fresh_process(scaled_copy(root, 1, Path(tmp) / "x1"), workers)
        large = in_fresh_process(scaled_copy(root, scale, Path(tmp) / f"x{scale}"), workers)
    extra = (large["peak_rss_main_mb"] - small["peak_rss_main_mb"]) * 2**20 / (large["files"] - small["files"])
    print(f"\npeak RSS with {workers} workers (MB)")
    print(f"{'files':>8} {'main':>8} {'worker':>8} {'images/s':>9}")
    for r in (small, large):
        rss = f"{r['peak_rss_main_mb']:>8.0f} {r['peak_rss_worker_mb']:>8.0f}"
        print(f"{r['files']:>8} {rss} {r['images_per_second']:>9.0f}")
    print(f"main process: {extra:.0f} bytes more per extra file (the listing and the per-file records)")


def _hash(data: bytes) -> int:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft("L", (64, 64))  # as the report decodes
        return perceptual_hash(image)


def distances(root: Path, n_copies: int = 300, seed: int = 0) -> None:
    """Nearest-neighbour phash distance among ROOT's images, against the distance of a copy to its original."""
    paths = [s.path for s in list_samples(root)[0]]
    hashes = np.array([_hash(Path(p).read_bytes()) for p in paths], dtype=np.uint64)
    nearest = np.full(len(hashes), 64)
    for i in range(0, len(hashes), 1024):
        d = popcount(hashes[i : i + 1024, None] ^ hashes[None, :]).astype(np.int16)
        d[np.arange(len(d)), np.arange(i, i + len(d))] = 99  # not itself
        nearest[i : i + 1024] = d.min(axis=1)
    print(f"\nphash distances on {root} ({len(paths)} images)")
    print(f"nearest other image: min {nearest.min()}, 0.1% {np.percentile(nearest, 0.1):.0f}, "
          f"1% {np.percentile(nearest, 1):.0f}, 5% {np.percentile(nearest, 5):.0f}, median {np.median(nearest):.0f}; "
          f"share within 4 bits {np.mean(nearest <= 4):.1%}")  # fmt: skip
    edits = {
        "JPEG q90": lambda im: _jpeg(im, 90),
        "JPEG q75": lambda im: _jpeg(im, 75),
        "JPEG q50": lambda im: _jpeg(im, 50),
        "PNG": lambda im: cv2.imencode(".png", im)[1].tobytes(),
        "resize 90% + q90": lambda im: _jpeg(_resize(im, 0.9), 90),
        "resize 50% + q85": lambda im: _jpeg(_resize(im, 0.5), 85),
        "crop 5% + q90": lambda im: _jpeg(_crop(im, 0.025), 90),
        "mirror + q90": lambda im: _jpeg(im[:, ::-1], 90),
    }  # fmt: skip
    chosen = np.random.default_rng(seed).choice(len(paths), size=min(n_copies, len(paths)), replace=False)
    print(f"copy of an image -> distance to its original ({len(chosen)} images)")
    for name, edit in edits.items():
        d = np.array([int(popcount(hashes[i] ^ np.uint64(_hash(edit(cv2.imread(paths[i])))))) for i in chosen])
        spread = f"median {np.median(d):.0f}  p95 {np.percentile(d, 95):.0f}  p99 {np.percentile(d, 99):.0f}"
        print(f"  {name:18s} {spread}  max {d.max()}  share within 4 bits {np.mean(d <= 4):.1%}")


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def _crop(image: np.ndarray, margin: float) -> np.ndarray:
    dy, dx = round(image.shape[0] * margin), round(image.shape[1] * margin)
    return image[dy : image.shape[0] - dy, dx : image.shape[1] - dx]


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_DATA, help=f"dataset (default: {DEFAULT_DATA})")
    parser.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated (default: 1,2)")
    parser.add_argument("--scale", type=int, default=4, help="the memory run's large folder: scale x N (default: 4)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--distances", action="store_true", help="only the phash distance measurements")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one run, JSON on stdout
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    if not args.root.exists():
        sys.exit(f"error: {args.root}: no such dataset")
    if args.one:
        print(json.dumps(one_run(str(args.root), workers[0])))
    elif args.distances:
        distances(args.root)
    else:
        speed(args.root, workers)
        if not args.no_memory:
            memory(args.root, args.scale, max(workers))


if __name__ == "__main__":
    main()
