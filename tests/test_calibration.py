"""Probabilities that mean what they say: ECE, temperature scaling built into the ONNX file, thresholds for a
stated false positive rate, and evaluate.py's reliability diagram."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from conftest import export_cfg
from torchmetrics.functional import classification as F

from deepfake import export as export_mod
from deepfake.commands.evaluate import main as evaluate_main
from deepfake.contract import LOGIT_NAME, OUTPUT_NAME
from deepfake.errors import ConfigError
from deepfake.evaluate import evaluate
from deepfake.export import ExportOptions, describe_export, export, parse_threshold, preprocessed
from deepfake.export import calibration as export_calibration
from deepfake.export.calibration import add_verdict_band
from deepfake.metrics import (
    binary_metrics,
    binary_nll,
    ece,
    fit_temperature,
    rates_at,
    reliability_bins,
    threshold_at_fnr,
    threshold_at_fpr,
)
from deepfake.predictor import Predictor
from deepfake.samples import find_samples
from deepfake.training.checkpoint import load_checkpoint


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def synthetic(n=20_000, scale=1.5, seed=0):
    """True logits and labels drawn from them: sigmoid(true logit) is exactly calibrated."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, scale, n)
    return z, (rng.random(n) < sigmoid(z)).astype(np.int64)


# ---------------------------------------------------------------------------
# metrics


def test_ece_is_near_zero_when_calibrated_and_large_when_over_confident():
    z, y = synthetic()
    assert ece(sigmoid(z), y) < 0.02
    assert ece(sigmoid(4 * z), y) > 0.1
    # The standard definition (confidence of the predicted class, 15 equal bins), as torchmetrics computes it.
    for p in (sigmoid(z), sigmoid(4 * z)):
        pt = torch.tensor(p, dtype=torch.float32)
        expected = F.multiclass_calibration_error(torch.stack([1 - pt, pt], 1), torch.tensor(y), 2, n_bins=15)
        assert ece(p, y) == pytest.approx(float(expected), abs=1e-5)
        assert ece(p, y, by="p_fake") == pytest.approx(float(F.binary_calibration_error(pt, torch.tensor(y))), abs=1e-5)


def test_reliability_bins_by_hand():
    p, y = np.array([0.1, 0.3, 0.85, 0.95]), np.array([0, 1, 1, 1])
    by_p = reliability_bins(p, y, bins=5, by="p_fake")
    assert by_p["count"].tolist() == [1, 1, 0, 0, 2]
    assert by_p["observed"][[0, 1, 4]].tolist() == [0, 1, 1] and np.isnan(by_p["observed"][2])
    assert by_p["predicted"][[0, 1, 4]] == pytest.approx([0.1, 0.3, 0.9])
    # |0 - 0.1| + |1 - 0.3| + 2 |1 - 0.9|, over 4 images.
    assert ece(p, y, bins=5, by="p_fake") == pytest.approx((0.1 + 0.7 + 0.2) / 4)
    # Confidences 0.9 (right), 0.7 (0.3 reads real, but it is fake), 0.85 and 0.95 (right).
    by_confidence = reliability_bins(p, y, bins=5)
    assert by_confidence["count"].tolist() == [0, 0, 0, 1, 3]
    assert by_confidence["observed"][3] == 0 and by_confidence["predicted"][4] == pytest.approx(0.9)
    assert ece(p, y, bins=5) == pytest.approx((0.7 + 3 * 0.1) / 4)


@pytest.mark.parametrize("true_t", [3.0, 0.5])
def test_fit_temperature_recovers_a_known_temperature_and_keeps_the_ranking(true_t):
    z, y = synthetic(seed=1)
    logits = z * true_t  # over-confident (T = 3) or under-confident (T = 0.5) by a known factor
    t = fit_temperature(logits, y)
    assert t == pytest.approx(true_t, rel=0.1)
    assert fit_temperature(logits, y) == t  # deterministic
    assert ece(sigmoid(logits / t), y) < 0.02 < ece(sigmoid(logits), y)
    before, after = binary_metrics(sigmoid(logits), y, 0.5), binary_metrics(sigmoid(logits / t), y, 0.5)
    for name in ("auroc", "average_precision", "acc"):
        assert after[name] == pytest.approx(before[name], abs=1e-6), name
    # Without Platt's targets it is the plain maximum-likelihood T: no nearby T has a lower NLL.
    plain = fit_temperature(logits, y, platt_targets=False)
    assert plain == pytest.approx(t, rel=0.01)
    assert binary_nll(logits, y, plain) <= min(binary_nll(logits, y, plain * f) for f in (0.98, 1.02))


def test_fit_temperature_refuses_what_it_cannot_fit_and_stays_finite_on_separable_data():
    with pytest.raises(ValueError, match="no logits"):
        fit_temperature([], [])
    with pytest.raises(ValueError, match="real and fake.*all fake"):
        fit_temperature([0.3, 2.0], [1, 1])
    with pytest.raises(ValueError, match="3 logits for 2 labels"):
        fit_temperature([0.1, 0.2, 0.3], [0, 1])
    # Perfectly separated: plain maximum likelihood would drive T to 0 and every p to 0 or 1.
    t = fit_temperature([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1])
    assert 0.1 < t < 10 and sigmoid(2.0 / t) < 0.99
    assert fit_temperature([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1], platt_targets=False) < t


def test_threshold_at_fpr_is_the_lowest_that_keeps_the_rate():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], [300, 200])
    p = sigmoid(rng.normal(-1 + 2 * y, 1.2)).astype(np.float32)
    for rate in (0.01, 0.05, 0.2):
        t = threshold_at_fpr(p, y, rate)
        fpr, tpr = rates_at(p, y, t)
        assert fpr <= rate and 0 < tpr < 1
        # Lowest: the highest real score it leaves real, as a threshold, would call too many reals fake.
        highest_kept = p[(y == 0) & (p < t)].max()
        assert rates_at(p, y, highest_kept)[0] > rate
        assert not ((p > highest_kept) & (p < t)).any()  # no score between: the same decisions as the infimum
        assert (torch.tensor(p) >= t).tolist() == (p >= t).tolist()  # and in float32, as torchmetrics compares
    with pytest.raises(ValueError, match="no real images"):
        threshold_at_fpr([0.5], [1], 0.05)
    with pytest.raises(ValueError, match="no threshold below 1"):
        threshold_at_fpr([1.0, 1.0, 0.2], [0, 0, 1], 0.05)


# ---------------------------------------------------------------------------
# export


def test_threshold_option_takes_a_number_or_a_fpr_rule_and_names_bad_values():
    assert parse_threshold(0.4) == 0.4 and parse_threshold("0.4") == 0.4
    assert parse_threshold("fpr:0.05") == parse_threshold("FPR:0.050") == "fpr:0.05"
    for bad, message in [
        ("fpr:abc", r"threshold=fpr:abc: the false positive rate of fpr:<rate> must be a number strictly between"),
        ("fpr:1.5", r"threshold=fpr:1\.5: the false positive rate"),
        ("fpr:0", r"threshold=fpr:0: the false positive rate"),
        ("foo", r"threshold=foo is neither a number strictly between 0 and 1 nor fpr:<rate>"),
        (1.0, r"threshold=1\.0 must be strictly between 0 and 1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ExportOptions(ckpt="x", threshold=bad)
        with pytest.raises(ConfigError, match=message):
            export_mod.options_from(export_cfg("ckpt=x", f"threshold={bad}"), {})
    assert export_mod.options_from(export_cfg("ckpt=x", "threshold=fpr:0.05"), {}).threshold == "fpr:0.05"


@pytest.fixture(scope="module")
def calibrated(trained_run, tmp_path_factory):
    """The tiny run exported with a temperature fitted on its 4 validation images (the minimum lowered for it)
    and threshold=fpr:0.05, through export.py's Hydra config."""
    run, data = trained_run
    out = tmp_path_factory.mktemp("calibrated") / "model.onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_calibration, "MIN_TEMPERATURE_IMAGES", 2)
        report = export(export_cfg(f"ckpt={run}/checkpoints/last.ckpt", f"out={out}", "threshold=fpr:0.05"))
    return out, report, run, data


def val_split(run):
    samples = [s for s in find_samples(run / "split.csv")[0] if s.split == "val"]
    return [s.path for s in samples], np.array([s.label for s in samples])


def test_the_temperature_is_fitted_on_validation_and_built_into_the_graph(calibrated, capsys):
    out, report, run, _ = calibrated
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    t = float(meta["temperature"])
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    paths, labels = val_split(run)
    batch = preprocessed(checkpoint.preprocess, paths, checkpoint.faces)
    with torch.no_grad():
        logits = checkpoint.net(torch.from_numpy(batch)).double().numpy()
    # The one fitted on the validation split, to the 4 figures stored; the tiny model's logits are near 0, so
    # T is far from 1 and the division is really exercised.
    assert t == float(f"{fit_temperature(logits, labels):.4g}") == report["temperature"] and t < 0.5
    calibration = json.loads(meta["calibration"])
    assert calibration["fitted"] and calibration["images"] == len(paths) == 4 and "[val]" in calibration["data"]
    assert float(meta["val_ece_after"]) == pytest.approx(ece(sigmoid(logits / t), labels), abs=1e-4)
    assert float(meta["val_ece_before"]) == pytest.approx(ece(sigmoid(logits), labels), abs=1e-4)
    assert calibration["ece_after"] < calibration["ece_before"]

    predictor = Predictor(out)
    assert predictor.temperature == t
    inputs = np.concatenate([batch, np.random.default_rng(0).normal(0, 1, (6, *batch.shape[1:])).astype(np.float32)])
    p, logit = predictor.session.run([OUTPUT_NAME, LOGIT_NAME], {predictor.input_name: inputs})
    with torch.no_grad():
        raw = checkpoint.net(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(logit, raw, atol=1e-4)  # the logit output stays the network's own
    np.testing.assert_allclose(p, sigmoid(logit / t), atol=1e-5)
    # The Predictor reads that p_fake as it is (never scaling again), for an image as for a batch.
    np.testing.assert_allclose([v.p_fake for v in predictor.predict_batch(paths)], sigmoid(raw[:4] / t), atol=1e-5)
    assert "p_fake: probability of 'fake', sigmoid(logit / temperature)" in meta["output"]


def test_a_fpr_threshold_is_chosen_on_the_calibrated_validation_scores(calibrated):
    out, report, run, _ = calibrated
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    threshold = float(meta["threshold"])
    assert meta["threshold_rule"] == report["threshold_rule"] == "fpr:0.05" and threshold == report["threshold"]
    paths, labels = val_split(run)
    p = np.array([v.p_fake for v in Predictor(out).predict_batch(paths)])
    fpr = float((p[labels == 0] >= threshold).mean())
    assert fpr <= 0.05 and float(meta["threshold_val_fpr"]) == pytest.approx(fpr)
    assert float(meta["threshold_val_tpr"]) == pytest.approx(float((p[labels == 1] >= threshold).mean()))
    # The lowest such: no validation score lies between the highest real one and the threshold.
    assert not ((p > p[labels == 0].max()) & (p < threshold)).any()
    assert threshold == threshold_at_fpr(p, labels, 0.05)  # from the calibrated scores, not the network's sigmoid
    assert threshold != threshold_at_fpr(sigmoid(np.log(p / (1 - p)) * report["temperature"]), labels, 0.05)
    assert Predictor(out).threshold == threshold


def test_the_lower_threshold_is_chosen_on_the_same_validation_verdicts(calibrated, trained_run, tmp_path):
    out, report, run, _ = calibrated
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    low, threshold = float(meta["threshold_low"]), float(meta["threshold"])
    assert meta["threshold_low_rule"] == report["threshold_low_rule"] == "fnr:0.05" and low == report["threshold_low"]
    paths, labels = val_split(run)
    p = np.array([v.p_fake for v in Predictor(out).predict_batch(paths)])
    # What the file states holds for its own verdicts: the share of validation fakes, and of reals, below it.
    fnr = float((p[labels == 1] < low).mean())
    assert fnr <= 0.05 and float(meta["threshold_low_val_fnr"]) == pytest.approx(fnr)
    assert float(meta["threshold_low_val_tnr"]) == pytest.approx(float((p[labels == 0] < low).mean()))
    assert low == min(threshold_at_fnr(p, labels, 0.05), threshold) <= threshold
    assert "lower threshold" in describe_export(report) and "uncertain up to" in describe_export(report)
    # No band when asked, and a fixed one above the threshold is refused.
    run_dir, _ = trained_run
    plain = export(ckpt=str(run_dir), out=str(tmp_path / "plain.onnx"), threshold=0.5, threshold_low=None)
    assert plain["threshold_low"] is None and "no uncertain band" in describe_export(plain)
    assert "threshold_low" not in {p.key for p in onnx.load(tmp_path / "plain.onnx").metadata_props}
    with pytest.raises(ConfigError, match="threshold_low=0.6 is above the threshold 0.5"):
        export(ckpt=str(run_dir), out=str(tmp_path / "bad.onnx"), threshold=0.5, threshold_low=0.6)
    for bad in ("fnr:2", "soon"):
        with pytest.raises(ConfigError, match="threshold_low="):
            ExportOptions(ckpt="x", threshold_low=bad)


def test_a_file_from_before_the_band_gets_the_same_lower_threshold_export_would_give(calibrated, tmp_path):
    out, report, run, _ = calibrated
    older = tmp_path / "older.onnx"
    model = onnx.load(out)
    kept = [p for p in model.metadata_props if not p.key.startswith("threshold_low")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, older)
    assert Predictor(older).contract.threshold_low is None
    low, info = add_verdict_band(older, run / "split.csv")
    assert low == report["threshold_low"] and info["rule"] == "fnr:0.05" and info["val_images"] == 4
    after = {p.key: p.value for p in onnx.load(older).metadata_props}
    assert after == {p.key: p.value for p in onnx.load(out).metadata_props}  # every key as export writes it
    assert onnx.load(older).graph == onnx.load(out).graph


def test_export_prints_its_calibration_and_threshold(trained_run, tmp_path, capsys, monkeypatch):
    run, _ = trained_run
    monkeypatch.setattr(export_calibration, "MIN_TEMPERATURE_IMAGES", 2)
    report = export(ckpt=str(run), out=str(tmp_path / "m.onnx"), threshold=0.4)
    printed = describe_export(report)
    t = report["temperature"]
    assert f"temperature {t:g} fitted on 4 validation images (2 fake): ECE " in printed and "NLL" in printed
    assert "threshold 0.4 (fixed; on validation: FPR " in printed
    assert report["threshold"] == 0.4 and report["threshold_rule"] == "fixed" and report["threshold_val"]["images"] == 4


def test_too_few_validation_images_or_calibrate_false_keep_t_1(trained_run, tmp_path, capsys):
    run, _ = trained_run
    report = export(ckpt=str(run), out=str(tmp_path / "few.onnx"))
    assert report["temperature"] == 1.0 and "fitting needs at least 20" in describe_export(report)
    report = export(export_cfg(f"ckpt={run}", f"out={tmp_path / 'off.onnx'}", "calibrate=false"))
    assert "temperature 1 (calibrate=false)" in describe_export(report)
    meta = {p.key: p.value for p in onnx.load(tmp_path / "off.onnx").metadata_props}
    assert meta["temperature"] == "1.0" and json.loads(meta["calibration"])["fitted"] is False
    assert "val_ece_after" not in meta and "threshold_val_fpr" not in meta  # calibrate=false never reads val


def test_a_checkpoint_outside_its_run_exports_with_t_1_and_a_notice(trained_run, tmp_path, capsys):
    run, _ = trained_run
    alone = tmp_path / "alone.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", alone)
    report = export(ckpt=str(alone), out=str(tmp_path / "m.onnx"))
    assert report["temperature"] == 1.0
    assert "temperature 1: no validation split" in describe_export(report)
    assert Predictor(tmp_path / "m.onnx").temperature == 1.0
    with pytest.raises(ConfigError, match=r"threshold=fpr:0.05 is chosen on the run's validation split"):
        export(ckpt=str(alone), out=str(tmp_path / "n.onnx"), threshold="fpr:0.05")
    assert not (tmp_path / "n.onnx").exists()


def test_a_file_without_a_temperature_reads_as_t_1(exported, tmp_path):
    out, *_ = exported
    model = onnx.load(out)
    kept = [p for p in model.metadata_props if p.key != "temperature"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    old = tmp_path / "old.onnx"
    onnx.save(model, old)
    assert Predictor(old).temperature == 1.0


# ---------------------------------------------------------------------------
# evaluate


def test_evaluate_reports_ece_and_draws_the_reliability_diagram(calibrated, tmp_path, capsys):
    import cv2

    out, report, _, data = calibrated
    assert evaluate_main(["--model", str(out), "--data", str(data), "--out", str(tmp_path)]) == 0
    metrics = evaluate(out, data, tmp_path, progress=False).metrics
    samples, _ = find_samples(data)
    p = np.array([v.p_fake for v in Predictor(out).predict_batch([s.path for s in samples])])
    y = np.array([s.label for s in samples])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["ece"] == metrics["ece"] == pytest.approx(ece(p, y), abs=1e-6) and saved["ece"] > 0
    assert saved["temperature"] == report["temperature"]
    image = cv2.imread(str(tmp_path / "calibration.png"))
    assert image is not None and image.shape[0] > 400 and image.shape[1] > 400
    printed = capsys.readouterr().out
    assert f"temperature {report['temperature']:g}" in printed
    assert f"{saved['ece']:.4f}" in next(line for line in printed.splitlines() if line.startswith("ECE"))
    assert "calibration.png" in printed
