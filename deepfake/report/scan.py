"""Scanning: one small record per file (:func:`scan_file`: size, format, mode, dimensions, JPEG quality from the
quantisation tables, SHA-256, perceptual hash), made in a process pool and streamed into files.csv and into
fixed-size numpy columns (:class:`Scan`), so memory grows by tens of bytes per image, never by pixels."""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import NamedTuple

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from deepfake.errors import ImageError
from deepfake.images import check_pixels
from deepfake.preprocess import LABELS
from deepfake.samples import Sample

FILE_COLUMNS = (
    "path", "dataset", "split", "label", "group", "bytes", "format", "mode", "width", "height",
    "jpeg_quality", "jpeg_standard_tables", "sha256", "phash", "error",
)  # fmt: skip
_PHASH_DRAFT = (64, 64)  # JPEG decode size asked of libjpeg's DCT scaling; phash itself looks at 32x32
_HASH_CHUNK = 1 << 20
_MAX_CHUNKSIZE = 64

# The IJG (libjpeg) example tables of the JPEG standard, Annex K, in natural (row-major) order, as Pillow
# reports quantization tables.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
)  # fmt: skip
_IJG_CHROMA = np.array(
    [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
     47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32
)  # fmt: skip
# The tables libjpeg writes for quality 1..100 (rows), scaled as its jpeg_set_quality does.
_Q = np.arange(1, 101)[:, None]
_SCALE = np.where(_Q < 50, 5000 // _Q, 200 - 2 * _Q)  # percent
_STD_LUMA, _STD_CHROMA = (np.clip((table * _SCALE + 50) // 100, 1, 255) for table in (_IJG_LUMA, _IJG_CHROMA))
# Mean absolute difference per coefficient under which tables count as the standard ones (rounding).
_STANDARD_TOLERANCE = 1.0


# ---------------------------------------------------------------------------
# One file (runs in the worker processes)


class FileRecord(NamedTuple):
    """What a worker sends back for one file: a few hundred bytes, whatever the image's size."""

    size: int
    format: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    quality: int | None = None
    standard: bool | None = None  # JPEG: its tables are IJG's scaled for ``quality``
    sha256: bytes = b""
    phash: int | None = None
    error: str = ""


def scan_file(path: str) -> FileRecord:
    """One file's record. An unreadable file gives a record whose ``error`` says why, never an exception: one
    bad file among 190k must not end the run."""
    try:
        with open(path, "rb") as fh:
            digest, size = hashlib.sha256(), 0
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            if size == 0:
                return FileRecord(0, sha256=digest.digest(), error="empty file")
            fh.seek(0)
            return _describe(fh, size, digest.digest())
    except OSError as exc:
        return FileRecord(0, error=f"cannot read file: {exc.strerror or exc}")


def _describe(fh, size: int, digest: bytes) -> FileRecord:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: check_pixels says it in words
            image = Image.open(fh)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a reason to report, not a crash
        return FileRecord(size, sha256=digest, error=_reason(exc))
    with image:
        header = FileRecord(size, image.format or "", image.mode, *image.size, sha256=digest)
        try:
            check_pixels(*image.size)
            quality, standard = None, None
            if image.format in ("JPEG", "MPO"):
                quality, standard = jpeg_quality(getattr(image, "quantization", None))
                # Read from the header before draft(), which changes mode and size to the scaled decode.
                image.draft("L", _PHASH_DRAFT)
            phash = perceptual_hash(image)
        except Exception as exc:  # noqa: BLE001 - as above
            return header._replace(error=_reason(exc))
    return header._replace(quality=quality, standard=standard, phash=phash)


def _reason(exc: Exception) -> str:
    """A decoder's exception as a short reason for the report."""
    text = " ".join(str(exc).split())
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (no header Pillow recognises)"
    if isinstance(exc, ImageError):
        return text
    if isinstance(exc, Image.DecompressionBombError):
        return f"too large: {text}"
    if "truncated" in text.lower():
        return f"truncated ({text})"
    return f"damaged ({type(exc).__name__}: {text})"


def perceptual_hash(image: Image.Image) -> int:
    """imagehash's 64-bit DCT hash as an unsigned int (its hex string read as a number)."""
    bits = imagehash.phash(image).hash.ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def jpeg_quality(qtables) -> tuple[int | None, bool | None]:
    """The IJG quality (1..100) whose scaled luminance table is nearest to a JPEG's, and whether its tables are
    the standard ones scaled for that quality (libjpeg, Pillow, OpenCV: yes; many cameras and editors: no, and
    the quality is then only the nearest match). (None, None) without a luminance table."""
    if not qtables or 0 not in qtables or len(qtables[0]) != 64:
        return None, None
    chroma = tuple(qtables[1]) if 1 in qtables and len(qtables[1]) == 64 else None
    return _match_tables(tuple(qtables[0]), chroma)


@functools.lru_cache(maxsize=256)
def _match_tables(luma: tuple[int, ...], chroma: tuple[int, ...] | None) -> tuple[int, bool]:
    # Cached: a dataset's files mostly share a handful of tables, and the match costs more than the decode.
    error = np.abs(_STD_LUMA - np.array(luma)).mean(axis=1)
    best = int(np.argmin(error))
    standard = error[best] <= _STANDARD_TOLERANCE
    if standard and chroma is not None:
        standard = np.abs(_STD_CHROMA[best] - np.array(chroma)).mean() <= _STANDARD_TOLERANCE
    return best + 1, bool(standard)


# ---------------------------------------------------------------------------
# Every file (in the main process)


@dataclass
class Scan:
    """Every file's record as fixed-size numpy columns, index-aligned with the samples (about 60 bytes a file)."""

    size: np.ndarray
    width: np.ndarray
    height: np.ndarray
    fmt: np.ndarray  # code into formats ("" unknown)
    mode: np.ndarray  # code into modes
    quality: np.ndarray  # -1: not a JPEG
    standard: np.ndarray  # 1: standard tables, 0: not, -1: not a JPEG
    sha: np.ndarray  # (n, 32) uint8
    phash: np.ndarray  # uint64
    readable: np.ndarray
    hashed: np.ndarray  # the SHA-256 is known and the file is not empty
    errors: dict[int, str] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)  # name: code
    modes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def empty(cls, n: int) -> Scan:
        zeros = functools.partial(np.zeros, n)
        return cls(
            zeros(dtype=np.int64), zeros(dtype=np.int32), zeros(dtype=np.int32), zeros(dtype=np.int16),
            zeros(dtype=np.int16), np.full(n, -1, np.int16), np.full(n, -1, np.int8), np.zeros((n, 32), np.uint8),
            zeros(dtype=np.uint64), zeros(dtype=bool), zeros(dtype=bool),
        )  # fmt: skip

    def put(self, i: int, record: FileRecord) -> None:
        self.size[i], self.width[i], self.height[i] = record.size, record.width, record.height
        self.fmt[i] = self.formats.setdefault(record.format, len(self.formats))
        self.mode[i] = self.modes.setdefault(record.mode, len(self.modes))
        if record.quality is not None:
            self.quality[i], self.standard[i] = record.quality, int(bool(record.standard))
        if record.sha256 and record.size:
            self.sha[i] = np.frombuffer(record.sha256, np.uint8)
            self.hashed[i] = True
        if record.error:
            self.errors[i] = record.error
        else:
            self.phash[i], self.readable[i] = record.phash, True

    def format_names(self, index: np.ndarray) -> np.ndarray:
        return np.array(list(self.formats) or [""])[self.fmt[index]]

    def mode_names(self, index: np.ndarray) -> np.ndarray:
        return np.array(list(self.modes) or [""])[self.mode[index]]


@contextlib.contextmanager
def _records(paths: Iterable[str], workers: int, n: int) -> Iterator[Iterator[FileRecord]]:
    """FileRecords of ``paths`` in order, from ``workers`` processes (1: this one)."""
    if workers <= 1:
        yield map(scan_file, paths)
        return
    # Chunks amortise the inter-process traffic; smaller ones for a small dataset keep both cores busy.
    chunksize = max(1, min(_MAX_CHUNKSIZE, n // (workers * 8)))
    # imagehash imports scipy.fftpack on its first hash: do it once here, so forked workers inherit it.
    perceptual_hash(Image.new("L", (32, 32)))
    with Pool(workers) as pool:
        yield pool.imap(scan_file, paths, chunksize=chunksize)


def scan_files(samples: Sequence[Sample], out: Path, *, workers: int = 1, progress: bool = True) -> Scan:
    """Scan every sample's file in ``workers`` processes, writing out/files.csv as the records arrive."""
    result = Scan.empty(len(samples))
    start = time.perf_counter()
    with (
        open(out / "files.csv", "w", newline="", encoding="utf-8") as fh,
        _records((s.path for s in samples), workers, len(samples)) as records,
        tqdm(total=len(samples), desc="Scanning", unit="img", disable=not progress or None) as bar,
    ):
        writer = csv.writer(fh)
        writer.writerow(FILE_COLUMNS)
        for i, (sample, record) in enumerate(zip(samples, records, strict=True)):
            result.put(i, record)
            writer.writerow(_file_row(sample, record))
            bar.update()
    result.seconds = time.perf_counter() - start
    return result


def _file_row(s: Sample, r: FileRecord) -> list:
    quality = "" if r.quality is None else r.quality
    standard = "" if r.standard is None else int(r.standard)
    phash = "" if r.phash is None else f"{r.phash:016x}"
    return [
        s.path, s.dataset, s.split, LABELS[s.label], s.group, r.size, r.format, r.mode, r.width or "",
        r.height or "", quality, standard, r.sha256.hex(), phash, r.error,
    ]  # fmt: skip
