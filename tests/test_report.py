"""report.py: counts, JPEG quality, unreadable files, exact and near duplicates, leaks, and an offline page."""

import base64
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FACES_MINI, ROOT, make_undecodable_png
from PIL import Image

from deepfake.commands.report import main
from deepfake.report import build_report
from deepfake.report.duplicates import near_pairs, popcount
from deepfake.report.page import thumbnail_uri
from deepfake.report.scan import jpeg_quality, scan_file
from deepfake.samples import Sample, write_split


def smooth_image(seed: int, size: int = 64) -> np.ndarray:
    """A random blurry colour image: distinct seeds give distinct perceptual hashes."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, "JPEG", quality=quality)
    return path


def make_dataset(root: Path, n: int = 10, real_quality: int = 90, fake_quality: int = 90, seed: int = 0) -> Path:
    for label, (name, quality) in enumerate((("Real", real_quality), ("Fake", fake_quality))):
        for i in range(n):
            write_jpeg(
                root / name / f"{name.lower()}_{i:02d}.jpg", smooth_image(seed * 1000 + label * 100 + i), quality
            )
    return root


def report(root, tmp_path, **kwargs) -> dict:
    roots = [root] if isinstance(root, (str, Path)) else root
    return build_report(roots, tmp_path / "report", progress=False, samples_per_grid=4, **kwargs)


def pair_set(examples) -> set[frozenset]:
    return {frozenset((Path(p["a"]["path"]).name, Path(p["b"]["path"]).name)) for p in examples}


def kinds(summary) -> set[str]:
    return {f["kind"] for f in summary["findings"]}


# ---------------------------------------------------------------------------
# Pieces


@pytest.mark.parametrize("quality", [60, 75, 95])
def test_jpeg_quality_recovers_the_quality_an_image_was_encoded_with(quality, tmp_path):
    rgb = smooth_image(quality)
    pil = write_jpeg(tmp_path / "pil.jpg", rgb, quality)
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    (tmp_path / "cv2.jpg").write_bytes(buf.tobytes())
    for path in (pil, tmp_path / "cv2.jpg"):
        estimated, standard = jpeg_quality(Image.open(path).quantization)
        assert abs(estimated - quality) <= 2 and standard, (path, estimated)
        record = scan_file(str(path))
        assert (record.quality, record.standard, record.format, record.error) == (estimated, True, "JPEG", "")


def test_jpeg_quality_flags_tables_that_are_not_the_standard_ones():
    flat = {0: [7] * 64, 1: [9] * 64}  # no IJG quality scales the example table to a flat one
    _, standard = jpeg_quality(flat)
    assert standard is False
    assert jpeg_quality({}) == (None, None)


def test_a_png_has_no_jpeg_quality(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(smooth_image(1)).save(path)
    record = scan_file(str(path))
    assert record.format == "PNG" and record.quality is None and record.phash is not None and not record.error


def test_near_pairs_finds_exactly_the_pairs_brute_force_finds():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 400, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 400, dtype=np.uint64)
    # Plant near copies: flip a few random bits of some hashes.
    for k in range(60):
        source, flips = hashes[k], rng.choice(64, size=rng.integers(0, 9), replace=False)
        hashes[200 + k] = source ^ np.uint64(sum(1 << int(b) for b in flips))
    distance = popcount(hashes[:, None] ^ hashes[None, :])
    for threshold in (0, 3, 4, 8):
        a, b = np.nonzero(np.triu(distance <= threshold, k=1))
        fa, fb, fd, truncated = near_pairs(hashes, threshold)
        assert set(zip(fa.tolist(), fb.tolist(), strict=True)) == set(zip(a.tolist(), b.tolist(), strict=True))
        assert (fd == distance[fa, fb]).all() and not truncated


# ---------------------------------------------------------------------------
# Whole reports


def test_copies_across_classes_are_exact_and_near_duplicates(tmp_path):
    root = make_dataset(tmp_path / "data")
    # A real image re-encoded at another quality as a fake, and a byte copy of another real as a fake.
    Image.open(root / "Real" / "real_00.jpg").save(root / "Fake" / "reencoded.jpg", quality=60)
    shutil.copyfile(root / "Real" / "real_01.jpg", root / "Fake" / "copy.jpg")

    summary = report(root, tmp_path, workers=2)

    exact, near = summary["duplicates"]["exact"], summary["duplicates"]["near"]
    assert exact["groups"] == 1 and exact["categories"]["across_classes"] == {"groups": 1, "files": 2}
    (group,) = exact["examples"]["across_classes"]
    assert {Path(f["path"]).name for f in group} == {"real_01.jpg", "copy.jpg"}
    # The re-encode is the only near pair: distinct images stay apart, the byte copy is counted as exact only.
    assert pair_set(near["examples"]["across_classes"]) == {frozenset({"real_00.jpg", "reencoded.jpg"})}
    assert near["pairs"] == near["categories"]["across_classes"] == 1
    assert {"exact_across_classes", "near_across_classes"} <= kinds(summary)
    with open(tmp_path / "report" / "duplicates.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["kind"] for r in rows) == ["exact", "near"]
    assert all(r["label_a"] != r["label_b"] for r in rows)


def test_unreadable_files_are_listed_and_the_rest_is_reported(tmp_path):
    root = make_dataset(tmp_path / "data", n=6)
    data = (root / "Real" / "real_00.jpg").read_bytes()
    (root / "Real" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "Fake" / "empty.jpg").write_bytes(b"")
    (root / "Fake" / "notes.txt").write_text("not an image")
    make_undecodable_png(root / "Fake" / "zeroed.png")  # whole header, broken pixel data

    summary = report(root, tmp_path, workers=2)

    reasons = {Path(u["path"]).name: u["reason"] for u in summary["unreadable"]}
    assert set(reasons) == {"truncated.jpg", "empty.jpg", "notes.txt", "zeroed.png"}
    assert reasons["empty.jpg"] == "empty file"
    assert "truncated" in reasons["truncated.jpg"] and "not an image" in reasons["notes.txt"]
    assert reasons["zeroed.png"].startswith("damaged")
    assert summary["files"] == 16 and summary["readable"] == 12 and "unreadable" in kinds(summary)
    with open(tmp_path / "report" / "files.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and sum(bool(r["error"]) for r in rows) == 4
    # Two empty files share a SHA-256 but are not duplicate images.
    assert summary["duplicates"]["exact"]["groups"] == 0


def test_jpeg_quality_that_differs_by_class_is_a_finding(tmp_path):
    root = make_dataset(tmp_path / "data", n=12, real_quality=95, fake_quality=60)

    summary = report(root, tmp_path)

    quality = {label: p["jpeg_quality"] for label, p in summary["profiles"]["data"].items()}
    assert abs(quality["real"]["median"] - 95) <= 2 and abs(quality["fake"]["median"] - 60) <= 2
    (finding,) = [f for f in summary["findings"] if f["kind"] == "class_attribute"]
    assert finding["attribute"] == "JPEG quality" and finding["severity"] == "high"
    assert "q=95" in finding["text"] and "q=60" in finding["text"]


def test_the_same_quality_in_both_classes_is_no_finding(tmp_path):
    summary = report(make_dataset(tmp_path / "data", n=12), tmp_path)
    assert summary["findings"] == []


def test_the_page_opens_offline_and_embeds_the_sample_grid(tmp_path):
    root = make_dataset(tmp_path / "data", n=6)
    report(root, tmp_path)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    # Every src is an inline image: 4 thumbnails for each class.
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 8 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert "Samples" in page and "real_" in page and "fake_" in page
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["timing"]["images_per_second"] > 0


def test_a_split_csv_turns_a_copy_in_two_splits_into_a_leak(tmp_path):
    root = make_dataset(tmp_path / "data", n=6)
    shutil.copyfile(root / "Real" / "real_00.jpg", root / "Real" / "copy.jpg")
    write_jpeg(root / "Fake" / "extra.jpg", smooth_image(999), 90)  # under the root, not in split.csv
    listed = []
    for path in sorted((root / "Real").glob("*.jpg")) + sorted((root / "Fake").glob("fake_*.jpg")):
        split = "test" if path.name in ("copy.jpg", "real_05.jpg") else "train"
        group = "person1" if path.name in ("real_04.jpg", "real_05.jpg") else path.stem
        listed.append(Sample(str(path.resolve()), int(path.parent.name == "Fake"), split, dataset="mine", group=group))
    write_split(listed, tmp_path / "split.csv")

    summary = report(root, tmp_path, split_csv=tmp_path / "split.csv")

    assert summary["duplicates"]["exact"]["categories"]["across_splits"]["groups"] == 1
    assert summary["groups"]["in_two_splits"] == 1
    assert summary["groups"]["examples"] == [{"dataset": "mine", "group": "person1", "splits": ["test", "train"]}]
    assert {"exact_across_splits", "groups_in_two_splits", "unlisted"} <= kinds(summary)
    splits = {(r["dataset"], r["split"]): r["real"] + r["fake"] for r in summary["counts"]}
    assert splits == {("mine", "train"): 11, ("mine", "test"): 2, ("data", "unlisted"): 1}


def test_a_split_csv_alone_reports_the_files_it_lists(tmp_path):
    root = make_dataset(tmp_path / "data", n=3)
    listed = [Sample(str(p), int(p.parent.name == "Fake"), "train", dataset="mine") for p in root.glob("*/*.jpg")]
    write_split(listed, tmp_path / "split.csv")
    summary = build_report([], tmp_path / "report", split_csv=tmp_path / "split.csv", progress=False)
    assert summary["counts"] == [{"dataset": "mine", "split": "train", "real": 3, "fake": 3, "unreadable": 0}]


def test_a_manifest_gives_labels_and_splits(tmp_path):
    root = make_dataset(tmp_path / "data", n=4)
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "split"])
        for path in sorted(root.glob("*/*.jpg")):
            writer.writerow(
                [path.relative_to(root), path.parent.name.lower(), "test" if "_00" in path.name else "train"]
            )
    summary = report(root, tmp_path, manifest="labels.csv")
    assert [(r["split"], r["real"], r["fake"]) for r in summary["counts"]] == [("train", 3, 3), ("test", 1, 1)]
    assert summary["roots"][0]["layout"] == "manifest"


def test_without_a_split_csv_an_unsplit_folder_has_no_split(tmp_path):
    summary = report(make_dataset(tmp_path / "data", n=4), tmp_path)
    assert [r["split"] for r in summary["counts"]] == [""]


def test_two_roots_are_two_datasets_and_a_shared_image_crosses_them(tmp_path):
    first = make_dataset(tmp_path / "one", n=4)
    second = make_dataset(tmp_path / "two", n=4, seed=1)
    shutil.copyfile(first / "Fake" / "fake_00.jpg", second / "Fake" / "borrowed.jpg")

    summary = report([first, second], tmp_path)

    assert set(summary["profiles"]) == {"all datasets", "one", "two"}
    assert summary["duplicates"]["exact"]["categories"]["across_datasets"] == {"groups": 1, "files": 2}
    assert "exact_across_datasets" in kinds(summary)


@pytest.mark.slow
@pytest.mark.parametrize("command", [[str(ROOT / "report.py")], ["-m", "deepfake.report"]])
def test_a_missing_root_is_one_line_and_exit_2(command, tmp_path, capsys):
    assert main(["/no/such/root", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "error: /no/such/root: no such file or directory"
    done = subprocess.run(
        [sys.executable, *command, "/no/such/root", "--out", str(tmp_path / "r")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: /no/such/root: no such file or directory"


def test_a_missing_split_csv_and_no_input_are_errors(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", n=2)
    assert main([str(root), "--split-csv", str(tmp_path / "none.csv"), "--out", str(tmp_path / "r")]) == 2
    assert "--split-csv" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "r")]) == 2
    assert "name at least one dataset ROOT" in capsys.readouterr().err


def test_the_command_line_prints_a_summary(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", n=3)
    assert main([str(root), "--out", str(tmp_path / "r"), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 (3 real, 3 fake)" in out and "images/s with 1 worker(s)" in out
    assert {p.name for p in (tmp_path / "r").iterdir()} == {
        "report.html",
        "summary.json",
        "files.csv",
        "duplicates.csv",
    }


@pytest.mark.skipif(not (FACES_MINI / "Real").is_dir(), reason=f"{FACES_MINI} not found")
def test_faces_mini(tmp_path):
    summary = report(FACES_MINI, tmp_path, workers=2)
    n_real, n_fake = (len(list((FACES_MINI / name).iterdir())) for name in ("Real", "Fake"))
    assert (summary["counts"][0]["real"], summary["counts"][0]["fake"]) == (n_real, n_fake)
    assert summary["readable"] == summary["files"] == n_real + n_fake
    with open(tmp_path / "report" / "files.csv") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows[:: len(rows) // 20]:  # spot-check against Pillow directly
        with Image.open(row["path"]) as image:
            assert (int(row["width"]), int(row["height"])) == image.size
            assert int(row["jpeg_quality"]) == jpeg_quality(image.quantization)[0]
    assert len(re.findall("data:image/jpeg;base64,", (tmp_path / "report" / "report.html").read_text())) >= 8


def test_thumbnails_survive_an_odd_file(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 not really")
    assert thumbnail_uri(str(tmp_path / "x.jpg")) is None
    write_jpeg(tmp_path / "y.jpg", smooth_image(3, 300), 80)
    uri = thumbnail_uri(str(tmp_path / "y.jpg"))
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(image.size) <= 112
