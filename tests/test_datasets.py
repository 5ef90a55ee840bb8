"""Manifests, grouped splits and several datasets in one run (deepfake.samples, deepfake.data), and the
cross-dataset table of evaluate.py on them."""

import csv
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_HFNET, compose_train, make_class_folders, make_image
from helpers import data_config
from omegaconf import OmegaConf

from deepfake.data.datamodule import DeepfakeDataModule
from deepfake.errors import ConfigError, DataError
from deepfake.preprocess import Preprocess
from deepfake.samples import dataset_specs, find_manifest, find_samples, read_split, split_digest

DFDC = ROOT.parent / "shared" / "datasets" / "dfdc-mini"


def write_manifest(root: Path, rows, name="metadata.csv", header=("file", "label", "source_video")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / name, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return root / name


def video_manifest(root: Path, n_videos: int = 60, seed: int = 0) -> Path:
    """Like DFDC: each source video gives one real crop and one or two fakes made from it."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(n_videos):
        rows.append((f"Real/v{v}_real.jpg", "real", f"video{v}.mp4"))
        for k in range(1 + int(rng.integers(0, 2))):
            rows.append((f"Fake/v{v}_fake{k}.jpg", "fake", f"video{v}.mp4"))
    return write_manifest(root, rows)


def groups_per_split(samples):
    splits = defaultdict(set)
    for s in samples:
        splits[s.group].add(s.split)
    return splits


def test_group_by_keeps_every_group_in_one_split_stratified_and_reproducible(tmp_path):
    video_manifest(tmp_path)
    samples, layout = find_samples(tmp_path, manifest="metadata.csv", group_by="source_video", seed=3)
    assert layout == "manifest" and len(samples) > 60
    assert all(len(splits) == 1 for splits in groups_per_split(samples).values())
    counts = Counter(s.split for s in samples)
    assert 0.05 < counts["test"] / len(samples) < 0.16 and 0.05 < counts["val"] / len(samples) < 0.16
    for split in ("train", "val", "test"):  # both classes in every split
        assert {s.label for s in samples if s.split == split} == {0, 1}
    again, _ = find_samples(tmp_path, manifest="metadata.csv", group_by="source_video", seed=3)
    assert sorted(again, key=lambda s: s.path) == sorted(samples, key=lambda s: s.path)


def test_a_split_by_file_would_leak_groups_that_group_by_keeps_apart(tmp_path, caplog):
    # The failure group_by exists for: split by file, a real and its fake land on both sides.
    video_manifest(tmp_path)
    with caplog.at_level(logging.WARNING):
        by_file, _ = find_samples(tmp_path, manifest="metadata.csv", seed=3)
    leaks = defaultdict(set)
    with open(tmp_path / "metadata.csv") as fh:
        video = {str(tmp_path / r["file"]): r["source_video"] for r in csv.DictReader(fh)}
    for s in by_file:
        leaks[video[s.path]].add(s.split)
    assert sum(len(splits) > 1 for splits in leaks.values()) > 5  # groups leak
    warned = [r for r in caplog.records if "data.group_by" in r.getMessage()]
    assert len(warned) == 1 and "source_video" in warned[0].getMessage()


def test_manifest_paths_labels_and_extra_columns(tmp_path):
    write_manifest(tmp_path, [("a.jpg", "0", "x"), ("sub/b.jpg", "fake", "y")], header=("File", "Label", "Who"))
    samples, _ = find_samples(tmp_path / "metadata.csv", val_fraction=0.0, test_fraction=0.0)
    assert {(Path(s.path).relative_to(tmp_path).as_posix(), s.label) for s in samples} == {
        ("a.jpg", 0),
        ("sub/b.jpg", 1),
    }
    assert find_manifest(tmp_path) == "metadata.csv" and find_manifest(tmp_path / "sub") is None


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"manifest": "nope.csv"}, DataError, "data.manifest=nope.csv: no such file"),
        ({"manifest": "metadata.csv", "group_by": "person"}, ConfigError, "data.group_by=person: manifest .* no such"),
        ({"group_by": "source_video"}, ConfigError, "needs a manifest"),
    ],
)
def test_bad_manifest_settings_are_named(tmp_path, overrides, error, message):
    video_manifest(tmp_path)
    with pytest.raises(error, match=message):
        find_samples(tmp_path, **overrides)


def test_too_few_groups_for_the_split_is_named(tmp_path):
    write_manifest(tmp_path, [(f"{i}.jpg", i % 2, f"v{i % 3}") for i in range(12)])
    with pytest.raises(DataError, match="3 groups are too few"):
        find_samples(tmp_path, manifest="metadata.csv", group_by="source_video")


def test_several_roots_take_the_shared_manifest_where_it_is_and_name_each_dataset(tmp_path):
    folders = make_class_folders(tmp_path / "faces", 3, 3)
    videos = tmp_path / "videos"
    video_manifest(videos)
    specs = dataset_specs([str(folders), str(videos)], manifest="metadata.csv", group_by="source_video")
    assert [(s.name, s.manifest, s.group_by) for s in specs] == [
        ("faces", None, None),
        ("videos", "metadata.csv", "source_video"),
    ]
    # A mapping sets a dataset's own settings; the same folder name twice gets two names.
    other = make_class_folders(tmp_path / "more" / "faces", 2, 2)
    specs = dataset_specs([str(folders), {"root": str(other), "test_fraction": 0.3}])
    assert [s.name for s in specs] == ["faces", "faces_2"] and specs[1].test_fraction == 0.3
    with pytest.raises(ConfigError, match="unknown key"):
        dataset_specs([{"root": str(folders), "grup_by": "x"}])
    with pytest.raises(DataError, match="no such file"):
        dataset_specs([str(folders), str(tmp_path / "missing")])


def test_balance_dataset_draws_each_dataset_equally_often(tmp_path):
    big = make_class_folders(tmp_path / "big", 30, 30)
    small = make_class_folders(tmp_path / "small", 6, 6)

    def drawn(balance):
        settings = data_config([big, small], batch_size=8, num_workers=0, val_fraction=0.2, test_fraction=0.2)
        dm = DeepfakeDataModule(OmegaConf.merge(settings, {"balance": balance}), Preprocess(16), seed=0)
        dm.setup()
        loader = dm.train_dataloader()
        index = dm.datasets["train"].dataset_index
        return Counter(index[i] for _ in range(20) for i in loader.sampler), len(index)

    balanced, n = drawn("dataset")
    assert sum(balanced.values()) == 20 * n and 0.45 < balanced[1] / (20 * n) < 0.55
    plain, _ = drawn("none")
    assert plain[1] / (20 * n) < 0.2  # in proportion: 8 of 44 training images
    with pytest.raises(ConfigError, match="data.balance=both"):
        DeepfakeDataModule(data_config(big, balance="both"), Preprocess(16), seed=0)


@pytest.fixture(scope="module")
def two_dataset_run(tmp_path_factory):
    """A tiny hfnet trained on two generated datasets at once: folders and a grouped manifest."""
    tmp = tmp_path_factory.mktemp("two")
    folders = make_class_folders(tmp / "plain", 20, 20)
    videos = tmp / "videos"
    manifest = video_manifest(videos, n_videos=24, seed=1)
    with open(manifest) as fh:
        for k, row in enumerate(csv.DictReader(fh)):
            make_image(videos / row["file"], int(row["label"] == "fake"), seed=1000 + k, size=40)
    run = tmp / "run"
    cfg = compose_train(
        f"run_dir={run}",
        f"data.root=[{folders},{videos}]",
        "data.manifest=metadata.csv",
        "data.group_by=source_video",
        "data.balance=dataset",
        *TINY_HFNET,
        "trainer.max_epochs=4",
    )
    from deepfake.training.train import train

    train(cfg)
    return run, folders, videos


def test_a_run_on_two_datasets_names_them_in_split_csv_and_scores_each(two_dataset_run):
    run, folders, videos = two_dataset_run
    samples = read_split(run / "split.csv")
    assert {s.dataset for s in samples} == {"plain", "videos"}
    assert all(s.group for s in samples if s.dataset == "videos") and not any(
        s.group for s in samples if s.dataset == "plain"
    )
    assert all(len(splits) == 1 for splits in groups_per_split([s for s in samples if s.group]).values())
    metrics = json.loads((run / "metrics.json").read_text())
    data = metrics["data"]["datasets"]
    assert data["videos"]["group_by"] == "source_video" and data["plain"]["layout"] == "folders"
    assert data["videos"]["test_files_sha256"] == split_digest([s for s in samples if s.dataset == "videos"], videos)
    n = {name: sum(data[name]["test"].values()) for name in data}
    # Accuracy over the union is the image-weighted mean of each dataset's.
    weighted = sum(metrics[f"test/{name}/acc"] * n[name] for name in n) / sum(n.values())
    assert metrics["test/acc"] == pytest.approx(weighted, abs=1e-5)
    assert {f"test/{name}/auroc" for name in n} <= set(metrics)


def test_cross_dataset_table_matches_training_per_dataset_scores(two_dataset_run, exported, tmp_path, capsys):
    from deepfake.commands.evaluate import main

    run, folders, videos = two_dataset_run
    other_model = exported[0]
    out = tmp_path / "cross"
    args = ["--model", str(run), "--model", str(other_model), "--data", str(folders), "--data", str(videos)]
    assert main([*args, "--split", "test", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "videos: " in printed and "split.csv" in printed
    with open(out / "cross_dataset.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["run", other_model.stem]
    assert set(rows[0]) == {"model", "plain", "videos", "plain acc", "videos acc", "plain eer", "videos eer"}
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ("plain", "videos"):  # the run's own test split, scored through its ONNX export
        assert float(rows[0][name]) == pytest.approx(metrics[f"test/{name}/auroc"], abs=1e-4)
        assert float(rows[0][f"{name} acc"]) == pytest.approx(metrics[f"test/{name}/acc"], abs=1e-4)
    cells = json.loads((out / "cross_dataset.json").read_text())["cells"]
    # Both models saw the same images of each dataset.
    assert cells["run"]["videos"]["n_images"] == cells[other_model.stem]["videos"]["n_images"]
    assert (out / "cross_dataset.png").stat().st_size > 10_000


def test_an_onnx_model_finds_its_grouped_test_split_from_its_metadata(two_dataset_run, tmp_path):
    from deepfake.evaluate import TrainingSplit, select_samples
    from deepfake.export import export
    from deepfake.predictor import Predictor

    run, _, videos = two_dataset_run
    onnx = tmp_path / "two.onnx"
    export(ckpt=str(run), out=str(onnx))
    trained = TrainingSplit.of("two", onnx, Predictor(onnx))
    assert trained.split_csv is None and [d["name"] for d in trained.datasets] == ["plain", "videos"]
    samples, _, how = select_samples(videos, "test", trained=[trained])
    expected = sorted(s.path for s in read_split(run / "split.csv") if s.dataset == "videos" and s.split == "test")
    assert sorted(s.path for s in samples) == expected and "metadata" in how


@pytest.mark.slow
@pytest.mark.skipif(not DFDC.is_dir(), reason="../shared/datasets/dfdc-mini is absent")
def test_a_dfdc_mini_run_grouped_by_source_video_writes_a_leak_free_split_csv(tmp_path):
    from deepfake.training.train import train

    cfg = compose_train(
        f"run_dir={tmp_path}",
        f"data.root={DFDC}",
        "data.manifest=metadata.csv",
        "data.group_by=source_video",
        "trainer=cpu",
        "model=cnn",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "test=false",
        "data.num_workers=0",
        "data.image_size=32",
        "callbacks.progress_bar=null",
    )
    train(cfg)
    samples = read_split(tmp_path / "split.csv")
    assert len(samples) == 8000 and all(s.group.endswith(".mp4") for s in samples)
    assert all(len(splits) == 1 for splits in groups_per_split(samples).values())
    assert Counter(s.split for s in samples) == {"train": 6400, "val": 800, "test": 800}
