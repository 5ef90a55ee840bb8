"""evaluate.py, robustness, training curves and compare.py, on the session's tiny trained run and its export."""

import csv
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, make_image

from deepfake.commands.compare import main as compare_main
from deepfake.commands.evaluate import main as evaluate_main
from deepfake.compare import compare
from deepfake.curves import plot_curves, read_epoch_metrics
from deepfake.evaluate import evaluate, score_samples, select_samples
from deepfake.metrics import binary_metrics
from deepfake.predictor import Predictor
from deepfake.robustness import read_perturbations
from deepfake.samples import find_samples
from deepfake.training.checkpoint import load_checkpoint


def pair_auc(p, y):
    """ROC AUC by its definition: the share of (fake, real) pairs ranked fake-first, ties counting half."""
    fake, real = p[y == 1][:, None], p[y == 0][None, :]
    return float(((fake > real) + 0.5 * (fake == real)).mean())


def png_size(path):
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    return image.shape[1], image.shape[0]


def test_metrics_agree_with_counting_by_hand():
    # Reals 0.1..0.4, fakes 0.35..0.7: one pair inverted (0.4 real above 0.35 fake) out of 16.
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.6, 0.7])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    m = binary_metrics(p, y, threshold=0.45)
    assert m["auroc"] == pytest.approx(15 / 16) == pytest.approx(pair_auc(p, y))
    assert (m["roc_auc"], m["accuracy"]) == (m["auroc"], m["acc"])  # the names files written before used
    # At 0.45: reals all below, fakes 0.5, 0.6, 0.7 above, 0.35 missed.
    assert m["confusion_matrix"]["matrix"] == [[4, 0], [1, 3]]
    assert (m["acc"], m["precision"], m["recall"]) == pytest.approx((7 / 8, 1.0, 3 / 4))
    assert m["f1"] == pytest.approx(2 * 1.0 * 0.75 / 1.75)
    # At a threshold of 0.4 one real is called fake and one fake missed: FPR = FNR = 1/4.
    assert m["eer"] == pytest.approx(0.25) and m["eer_threshold"] == pytest.approx(0.4)
    report = m["classification_report"]
    assert report["real"] == pytest.approx({"precision": 4 / 5, "recall": 1.0, "f1": 2 * 0.8 / 1.8, "support": 4})
    assert report["fake"]["precision"] == pytest.approx(1.0) and report["fake"]["support"] == 4
    assert report["macro avg"]["f1"] == pytest.approx((report["real"]["f1"] + report["fake"]["f1"]) / 2)
    # Average precision by definition: mean precision at each fake's rank (0.7, 0.6, 0.5, then 0.35 after a real).
    assert m["average_precision"] == pytest.approx((1 + 1 + 1 + 4 / 5) / 4)


def test_eer_is_where_false_positive_and_negative_rates_cross():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    p = np.clip(rng.normal(0.4 + 0.2 * y, 0.15), 0, 1)
    m = binary_metrics(p, y, threshold=0.5)
    fpr = ((p >= m["eer_threshold"]) & (y == 0)).sum() / 200
    fnr = ((p < m["eer_threshold"]) & (y == 1)).sum() / 200
    assert 0 < m["eer"] < 0.5
    assert abs(fpr - m["eer"]) <= 0.01 and abs(fnr - m["eer"]) <= 0.01


def test_one_class_only_gives_no_ranking_metrics():
    m = binary_metrics(np.array([0.2, 0.9]), np.array([1, 1]), threshold=0.5)
    assert m["auroc"] is None and m["eer"] is None and m["average_precision"] is None
    assert m["recall"] == pytest.approx(0.5)


def test_evaluate_onnx_matches_the_predictor_and_writes_the_report(exported, tmp_path, capsys):
    onnx_path, _, _, data = exported
    assert evaluate_main(["--model", str(onnx_path), "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    metrics = evaluate(onnx_path, data, tmp_path / "again", progress=False).metrics
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    samples, _ = find_samples(data)
    predictor = Predictor(onnx_path)
    p = np.array([r.p_fake for r in predictor.predict_batch([s.path for s in samples])])
    y = np.array([s.label for s in samples])
    called_fake = p >= predictor.threshold
    expected = [
        [int((~called_fake & (y == 0)).sum()), int((called_fake & (y == 0)).sum())],
        [int((~called_fake & (y == 1)).sum()), int((called_fake & (y == 1)).sum())],
    ]
    assert saved["confusion_matrix"] == {
        "labels": ["real", "fake"],
        "rows": "true",
        "columns": "predicted",
        "matrix": expected,
    }
    assert (saved["n_images"], saved["n_real"], saved["n_fake"], saved["skipped"]) == (40, 20, 20, 0)
    assert saved["split"] is None and saved["model_name"] == "hfnet"
    assert saved["auroc"] == saved["roc_auc"] == pytest.approx(pair_auc(p, y), abs=1e-6)
    assert saved["acc"] == saved["accuracy"] == pytest.approx((called_fake == y).mean())
    assert 0.0 <= saved["eer"] <= 1.0
    assert 0.0 < saved["ece"] <= 1.0 and saved["temperature"] == Predictor(onnx_path).temperature
    for name in ("roc.png", "confusion_matrix.png", "calibration.png"):
        width, height = png_size(tmp_path / "out" / name)
        assert width > 300 and height > 300
    printed = capsys.readouterr().out
    assert f"{saved['auroc']:.4f}" in next(line for line in printed.splitlines() if line.startswith("ROC AUC"))
    assert "macro avg" in printed


def test_a_checkpoint_scores_exactly_as_its_export(exported, tmp_path):
    onnx_path, _, run, data = exported
    from_onnx = evaluate(onnx_path, data, tmp_path / "a", split="test", progress=False).metrics
    from_ckpt = evaluate(run / "checkpoints" / "last.ckpt", data, tmp_path / "b", split="test", progress=False).metrics
    for key in ("acc", "precision", "recall", "f1", "auroc", "average_precision", "eer"):
        assert from_ckpt[key] == pytest.approx(from_onnx[key], abs=1e-6), key
    assert from_ckpt["confusion_matrix"] == from_onnx["confusion_matrix"]


def test_training_and_evaluate_report_the_same_test_scores_under_the_same_names(trained_run, tmp_path):
    """One metrics module: metrics.json of the run (best checkpoint, test split, streamed batch by batch)
    and evaluate.py on that run's test split agree on every figure both write."""
    run, data = trained_run
    trained = json.loads((run / "metrics.json").read_text())
    evaluated = evaluate(run, data, tmp_path, split="test", progress=False).metrics
    for name in ("acc", "precision", "recall", "f1", "auroc"):
        assert evaluated[name] == pytest.approx(trained[f"test/{name}"], abs=1e-6), name


def test_split_of_a_plain_folder_is_the_one_training_used(trained_run):
    run, data = trained_run
    with open(run / "split.csv") as fh:
        trained = sorted(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
    samples, layout, _ = select_samples(data, "test")
    assert layout == "folders" and sorted(s.path for s in samples) == trained and len(trained) == 4


def test_undecodable_images_are_skipped_and_named(exported, tmp_path, capsys):
    onnx_path, _, _, data = exported
    copy = shutil.copytree(data, tmp_path / "data")
    good = (copy / "Fake" / "fake_000.jpg").read_bytes()
    (copy / "Fake" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (copy / "Real" / "empty.jpg").write_bytes(b"")
    assert evaluate_main(["--model", str(onnx_path), "--data", str(copy), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 image(s)" in err and "truncated.jpg: truncated JPEG" in err and "empty.jpg: empty file" in err
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["skipped"] == 2 and saved["n_images"] == 40
    assert sorted(f["path"].rsplit("/", 1)[1] for f in saved["skipped_files"]) == ["empty.jpg", "truncated.jpg"]


def test_unusable_model_data_or_options_exit_2_with_one_line(exported, tmp_path, capsys):
    onnx_path, _, _, data = exported
    out = ["--out", str(tmp_path / "out")]
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    cases = [
        (["--model", str(tmp_path / "missing.onnx"), "--data", str(data)], "missing.onnx: no such file"),
        (["--model", str(corrupt), "--data", str(data)], "cannot be loaded by onnxruntime"),
        (["--model", str(onnx_path), "--data", str(tmp_path / "nowhere")], "nowhere: no such file or directory"),
        (["--model", str(onnx_path), "--data", str(tmp_path)], "no dataset layout found"),
    ]
    for args, message in cases:
        assert evaluate_main(args + out) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exc:
        evaluate_main(["--model", str(onnx_path), "--data", str(data), *out, "--split", "training"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_the_script_reports_a_missing_model_without_a_traceback(folder_dataset, tmp_path):
    result = subprocess.run(
        [sys.executable, "evaluate.py", "--model", "nope.onnx", "--data", str(folder_dataset), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr == "error: --model nope.onnx: no such file or directory\n"


# ---------------------------------------------------------------------------
# Robustness


def test_each_perturbation_changes_the_pixels_by_its_strength(tmp_path):
    rgb = cv2.cvtColor(cv2.imread(str(make_image(tmp_path / "f.png", 1, seed=3, size=96))), cv2.COLOR_BGR2RGB)

    def error(name):
        out = read_perturbations()[name](rgb, np.random.default_rng(0))
        assert out.shape == rgb.shape and out.dtype == np.uint8
        return float(np.abs(out.astype(float) - rgb).mean())

    errors = {name: error(name) for name in read_perturbations() if name != "framed_2x"}
    assert all(e > 0.5 for e in errors.values()), errors
    assert errors["jpeg_q50"] > errors["jpeg_q70"] > errors["jpeg_q90"]
    assert errors["blur_sigma2"] > errors["blur_sigma1"]
    noise = read_perturbations()["noise_sigma8"]
    seeded = [noise(rgb, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(*seeded)  # results do not depend on scoring order
    assert np.std(noise(np.full((64, 64, 3), 128, np.uint8), np.random.default_rng(0)).astype(float)) == pytest.approx(
        8, rel=0.05
    )


def test_framed_puts_the_image_whole_inside_a_larger_blurred_copy_of_itself(tmp_path):
    rgb = cv2.cvtColor(cv2.imread(str(make_image(tmp_path / "f.png", 0, seed=3, size=96))), cv2.COLOR_BGR2RGB)
    out = read_perturbations()["framed_2x"](rgb, np.random.default_rng(0))
    assert out.shape == (192, 192, 3)
    # Somewhere inside is the image itself (JPEG 95 changes it only slightly), and around it something else.
    matches = [
        (y, x)
        for y in range(0, 97)
        for x in range(0, 97)
        if np.abs(out[y : y + 96, x : x + 96].astype(float) - rgb).mean() < 2
    ]
    assert matches and np.ptp(np.array(matches), axis=0).max() <= 4  # one place (a smooth image matches +-2 px)
    y, x = matches[0]
    outside = np.ones(out.shape[:2], bool)
    outside[y : y + 96, x : x + 96] = False
    assert outside.any()
    other = read_perturbations()["framed_2x"](rgb, np.random.default_rng(1))
    assert not np.array_equal(out, other)  # the place is drawn per image


def test_robustness_writes_one_row_per_perturbation(exported, tmp_path, capsys):
    onnx_path, _, _, data = exported
    assert evaluate_main(["--model", str(onnx_path), "--data", str(data), "--out", str(tmp_path), "--robustness"]) == 0
    rows = json.loads((tmp_path / "robustness.json").read_text())
    assert [r["perturbation"] for r in rows] == ["clean", *read_perturbations()]
    clean = json.loads((tmp_path / "metrics.json").read_text())
    assert rows[0]["auroc"] == clean["auroc"] and rows[0]["auroc_drop"] == 0
    assert all(r["auroc_drop"] == pytest.approx(clean["auroc"] - r["auroc"]) for r in rows)
    assert all((r["roc_auc"], r["accuracy"], r["auc_drop"]) == (r["auroc"], r["acc"], r["auroc_drop"]) for r in rows)
    table = (tmp_path / "robustness.md").read_text()
    assert all(f"| {r['perturbation']} |" in table for r in rows)
    assert png_size(tmp_path / "robustness.png")[0] > 300
    assert "| jpeg_q50 |" in capsys.readouterr().out


def test_the_perturbation_set_comes_from_yaml_and_a_bad_entry_is_named(exported, tmp_path, capsys):
    onnx_path, _, _, data = exported
    args = ["--model", str(onnx_path), "--data", str(data), "--out", str(tmp_path / "out"), "--robustness"]
    custom = tmp_path / "set.yaml"
    custom.write_text("jpeg_q30: {kind: jpeg, quality: 30}\nsoft: {kind: blur, sigma: 0.5}\n")
    assert evaluate_main([*args, "--perturbations", str(custom)]) == 0
    rows = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert [(r["perturbation"], r["description"]) for r in rows] == [
        ("clean", "none (as stored)"),
        ("jpeg_q30", "JPEG re-encode, quality 30"),
        ("soft", "Gaussian blur, sigma 0.5 px"),
    ]
    capsys.readouterr()
    for text, message in [
        ("x: {kind: sharpen}\n", "perturbation x: kind='sharpen' is not one of jpeg, blur"),
        ("y: {kind: blur, radius: 2}\n", "perturbation y: a blur takes sigma, not radius"),
        ("[1, 2]\n", "maps names to {kind: ..., <settings>}"),
    ]:
        custom.write_text(text)
        assert evaluate_main([*args, "--perturbations", str(custom)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_perturbations_reach_the_model(exported):
    onnx_path, _, _, data = exported
    samples, _ = find_samples(data)
    scores = score_samples(Predictor(onnx_path), samples, read_perturbations(), batch_size=16, progress=False)
    clean = scores.p_fake["clean"]
    for name in read_perturbations():
        assert np.abs(scores.p_fake[name] - clean).mean() > 1e-4, name
    # Neither batching nor threads change anything, noise included.
    again = score_samples(Predictor(onnx_path), samples, read_perturbations(), batch_size=7, progress=False, workers=1)
    for name, p in scores.p_fake.items():
        np.testing.assert_allclose(again.p_fake[name], p, atol=1e-6)


# ---------------------------------------------------------------------------
# Training curves


def test_a_training_run_draws_its_curves(trained_run):
    run, _ = trained_run
    epochs = read_epoch_metrics(run)
    assert list(epochs) == list(range(8))
    for stage in ("train", "val"):
        for metric in ("loss", "acc", "auroc"):
            assert all(f"{stage}/{metric}" in m for m in epochs.values()), (stage, metric)
    assert png_size(run / "curves.png")[0] > 600


def test_curves_merge_resumed_versions_and_survive_missing_columns(tmp_path):
    def write(version, header, rows):
        path = tmp_path / "logs" / f"version_{version}" / "metrics.csv"
        path.parent.mkdir(parents=True)
        path.write_text("\n".join([header, *rows]) + "\n")

    assert read_epoch_metrics(tmp_path) == {} and plot_curves(tmp_path) is None
    # A crash after epoch 1's training rows, then a resume that re-runs epoch 1 and adds epoch 2 (no val at all);
    # version_10 sorts before version_9 as text, so this also checks the versions are taken in number order.
    write(9, "epoch,step,train/loss,val/loss,val/auroc,lr-Adam", ["0,9,0.7,0.69,0.6,", ",10,,,,0.001", "1,19,0.6,,,"])
    write(10, "epoch,step,train/loss", ["1,19,0.5", "2,29,0.4"])
    epochs = read_epoch_metrics(tmp_path)
    assert epochs == {
        0: {"train/loss": 0.7, "val/loss": 0.69, "val/auroc": 0.6},
        1: {"train/loss": 0.5},
        2: {"train/loss": 0.4},
    }
    assert plot_curves(tmp_path) == tmp_path / "curves.png" and png_size(tmp_path / "curves.png")[0] > 600


# ---------------------------------------------------------------------------
# Model comparison


def test_compare_ranks_the_runs_and_lists_a_failed_one(trained_run, tmp_path, capsys):
    run, _ = trained_run
    multirun = tmp_path / "multirun"
    shutil.copytree(run, multirun / "0_hfnet")
    shutil.copytree(run, multirun / "1_hfnet")
    metrics = json.loads((run / "metrics.json").read_text())
    # A second run that did worse: compare must sort by test AUROC, not by job number.
    metrics["test/auroc"] = 0.25
    metrics["best_checkpoint"] = str(multirun / "1_hfnet" / "checkpoints" / "last.ckpt")
    (multirun / "1_hfnet" / "metrics.json").write_text(json.dumps(metrics))
    (multirun / "2_cnn" / ".hydra").mkdir(parents=True)  # crashed before writing anything but Hydra's files
    (multirun / "multirun.yaml").write_text("hydra: {}\n")

    assert compare_main([str(multirun)]) == 0
    assert "| rank | model |" in capsys.readouterr().out
    rows = compare([multirun])
    assert [r["status"].split(" (")[0] for r in rows] == ["ok", "ok", "failed: no metrics.json"]
    params = sum(p.numel() for p in load_checkpoint(run).net.parameters())
    for row in rows[:2]:
        assert row["parameters"] == params and row["model"] == "hfnet" and row["epochs"] == 8
        assert row["size_mb"] > 0 and row["size_of"] == "onnx" and 0 < row["ms_per_image"] < 1000
    table = (multirun / "comparison.md").read_text()
    ranked = [line for line in table.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert len(ranked) == 2 and "`0_hfnet`" in ranked[0] and "`1_hfnet`" in ranked[1] and "0.2500" in ranked[1]
    assert "- cnn (`2_cnn`): failed: no metrics.json (crashed, interrupted or still running)" in table
    assert png_size(multirun / "comparison.png")[0] > 600
    assert json.loads((multirun / "comparison.json").read_text())[2]["run"] == "2_cnn"


def test_compare_without_runs_exits_2(tmp_path, capsys):
    assert compare_main([str(tmp_path)]) == 2
    assert "holds no training runs" in capsys.readouterr().err
    assert compare_main([str(tmp_path / "missing")]) == 2
    assert "missing: no such directory" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["cnn", "mobilenetv2"])
def test_one_pretrained_false_override_fits_every_model_of_a_sweep(compose_cfg, model):
    """train.py -m model=cnn,...,mobilenetv2 ++model.pretrained=false: from-scratch models accept the statement."""
    from omegaconf import OmegaConf

    from deepfake.training.module import DeepfakeLitModule

    cfg = compose_cfg(f"model={model}", "++model.pretrained=false", "data.root=unused")
    assert cfg.model.pretrained is False
    module = DeepfakeLitModule(OmegaConf.to_container(cfg.model, resolve=True), 32)
    assert module(torch.zeros(2, 3, 32, 32)).shape == (2,)
