"""The model-file contract (deepfake.contract): every key written and read back, old files read as before, and one
aggregation rule for the predictor, calibration and a ``threshold=fpr:`` rule."""

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from torch import nn

from deepfake import contract
from deepfake.contract import (
    Contract,
    aggregate_faces,
    aggregate_frames,
    aggregate_logits,
    attention_metadata,
    calibration_metadata,
    contract_metadata,
    deciding_face,
    metadata_of,
    parse_contract,
    set_metadata,
    threshold_metadata,
)
from deepfake.errors import ConfigError, ModelError
from deepfake.export import ExportOptions, export, write_onnx
from deepfake.export import calibration as export_calibration
from deepfake.faces import FaceStage
from deepfake.faces.drawing import BACKGROUND, draw_face
from deepfake.metrics import fit_temperature, threshold_at_fpr
from deepfake.predictor import Predictor
from deepfake.preprocess import Preprocess
from deepfake.samples import Sample, write_split
from deepfake.training.checkpoint import Checkpoint
from deepfake.video import write_video

DATA = Path(__file__).parent / "data"
OLD_MODEL = DATA / "old_default.onnx"


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def metadata(path) -> dict[str, str]:
    return metadata_of(onnx.load(path))


def hog(**settings) -> FaceStage:
    """dlib's HOG stage (the drawn faces are made for it), whatever a new FaceStage defaults to."""
    return FaceStage.from_dict({"detector": "dlib_hog", **settings})


# ---------------------------------------------------------------------------
# Keys


def test_every_key_round_trips_and_is_documented():
    preprocess = Preprocess(
        48, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), colour="BGR", scale=1 / 127.5, interpolation="linear"
    )
    stage = hog(margin=1.5, detect_size=320, second_size=640, min_size=30)
    meta = contract_metadata(
        preprocess,
        0.37,
        stage,
        temperature=1.83,
        aggregate_faces="mean",
        aggregate_frames="median",
        threshold_rule="fpr:0.1",
        model_name="hfnet",
        data={"seed": 7, "datasets": {}},
        test_metrics={"auroc": 0.9},
    )
    meta |= threshold_metadata(0.41, "fpr:0.1", 0.0975, 0.6123)
    calibration = {"method": "temperature scaling", "fitted": True, "ece_before": 0.0812, "ece_after": 0.0201}
    meta = attention_metadata(meta | calibration_metadata(calibration))
    assert all(isinstance(value, str) for value in meta.values())
    read = parse_contract(meta)
    assert read == Contract(
        preprocess,
        ("real", "fake"),
        "fake",
        0.41,
        "image",
        "p_fake",
        stage,
        1.83,
        "mean",
        "median",
        states_temperature=True,
        threshold_rule="fpr:0.1",
        threshold_val_fpr=0.0975,
        threshold_val_tpr=0.6123,
        calibration=calibration,
        attention_name="attention",
        model_name="hfnet",
        data={"seed": 7, "datasets": {}},
    )
    # The strings themselves: files in use and other readers depend on them.
    assert (
        meta["deepfake.contract"] == "1" and meta["aggregate_faces"] == "mean" and meta["aggregate_frames"] == "median"
    )
    assert meta["face_detector"] == "dlib_hog" and meta["face_margin"] == "1.5" and meta["face_detect_size"] == "320"
    assert (meta["threshold"], meta["threshold_rule"], meta["threshold_val_fpr"]) == ("0.41", "fpr:0.1", "0.0975")
    assert (meta["temperature"], meta["val_ece_before"], meta["val_ece_after"]) == ("1.83", "0.0812", "0.0201")
    assert meta["attention_output"] == "attention" and meta["output"].endswith("at feature resolution")
    assert "sigmoid(logit / temperature)" in meta["output"] and meta["colour_order"] == "BGR"
    # Every key is in the module's table.
    documented = contract.__doc__
    assert all(key in documented or key.startswith(contract.FACE_PREFIX) for key in meta), set(meta) - set(documented)


def test_a_whole_image_file_without_optional_keys_reads_with_todays_defaults():
    meta = contract_metadata(Preprocess(16))
    assert not any(key.startswith("face_") for key in meta) and "temperature" not in meta
    read = parse_contract({k: v for k, v in meta.items() if not k.startswith("aggregate_")})
    assert read.faces is None and read.temperature == 1.0 and not read.states_temperature
    assert (read.aggregate_faces, read.aggregate_frames) == ("max", "mean") and read.threshold == 0.5
    assert read.threshold_rule is None and read.calibration is None and read.attention_name is None


def test_bad_aggregation_values_are_clear_errors(tmp_path):
    meta = contract_metadata(Preprocess(16), faces=hog())
    with pytest.raises(
        ModelError, match=r"model metadata is invalid: aggregate_faces='median' is not one of max, mean"
    ):
        parse_contract(meta | {"aggregate_faces": "median"})
    with pytest.raises(ModelError, match=r"aggregate_frames='sum' is not one of mean, max, median"):
        parse_contract(meta | {"aggregate_frames": "sum"})
    with pytest.raises(ConfigError, match=r"aggregate_faces='largest' is not one of max, mean"):
        contract_metadata(Preprocess(16), aggregate_faces="largest")
    with pytest.raises(ConfigError, match=r"aggregate_faces='first' is not one of max, mean"):
        ExportOptions(ckpt="x", aggregate_faces="first")
    # A whole file with a bad value does not load.
    model = onnx.load(OLD_MODEL)
    set_metadata(model, metadata_of(model) | {"aggregate_faces": "median"})
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match=r"aggregate_faces='median' is not one of max, mean"):
        Predictor(tmp_path / "bad.onnx")


def test_a_bad_face_stage_is_a_model_error():
    meta = contract_metadata(Preprocess(16), faces=hog())
    with pytest.raises(ModelError, match="invalid face stage"):
        parse_contract(meta | {"face_margin": "0.5"})
    with pytest.raises(ModelError, match="invalid face stage"):
        parse_contract(meta | {"face_colour": "1"})


# ---------------------------------------------------------------------------
# Aggregation rules


def test_the_rules_by_hand():
    p = [0.2, 0.9, 0.4]
    assert aggregate_faces(p) == aggregate_faces(p, "max") == 0.9
    assert aggregate_faces(p, "mean") == pytest.approx(0.5)
    assert aggregate_frames(p) == pytest.approx(0.5) and aggregate_frames(p, "max") == 0.9
    assert aggregate_frames(p, "median") == 0.4
    assert deciding_face(p) == deciding_face(p, "mean") == 1
    with pytest.raises(ConfigError, match="aggregate_faces='median'"):
        aggregate_faces(p, "median")
    with pytest.raises(ValueError, match="no faces"):
        aggregate_faces([])


def test_aggregated_logits_give_the_images_p_fake_exactly_under_max_at_any_temperature():
    z = np.array([-1.5, 2.25, 0.4])
    for t in (0.3, 1.0, 1.7, 5.0):
        assert sigmoid(aggregate_logits(z, "max") / t) == pytest.approx(aggregate_faces(sigmoid(z / t), "max"))
        # Applied to the scaled logits, either rule gives the image's logit at that T exactly.
        for rule in ("max", "mean"):
            assert sigmoid(aggregate_logits(z / t, rule)) == pytest.approx(aggregate_faces(sigmoid(z / t), rule))
    assert sigmoid(aggregate_logits(z, "mean")) == pytest.approx(aggregate_faces(sigmoid(z), "mean"))
    assert aggregate_logits([3.0]) == aggregate_logits([3.0], "mean") == pytest.approx(3.0)


# ---------------------------------------------------------------------------
# Old files


def test_the_old_bundled_files_metadata_parses_as_it_was_written():
    read = parse_contract(metadata(OLD_MODEL))
    assert read.faces == hog() and read.faces.detector == "dlib_hog"
    assert (read.aggregate_faces, read.aggregate_frames) == ("max", "mean")  # the file has no such keys
    assert (read.threshold, read.temperature, read.threshold_rule) == (0.721, 1.527, "fpr:0.05")
    assert (read.threshold_val_fpr, read.threshold_val_tpr) == (0.05, 0.2271) and read.states_temperature
    assert read.preprocess == Preprocess(64) and read.model_name == "hfnet" and read.calibration["fitted"]
    assert read.data["seed"] == 42


def test_old_model_files_keep_their_verdicts():
    """tests/data/make_old_verdicts.py recorded these with the code of commit 6e34571."""
    record = json.loads((DATA / "old_default_verdicts.json").read_text())
    images = np.load(DATA / "old_default_images.npz")
    predictor = Predictor(OLD_MODEL, providers=["CPUExecutionProvider"])
    low = Predictor(OLD_MODEL, threshold=record["low_threshold"], providers=["CPUExecutionProvider"])
    calls = [(predictor, name, None, v) for name, v in record["faces"].items()]
    calls += [(predictor, name, False, v) for name, v in record["whole"].items()]
    calls += [(low, name, None, v) for name, v in record["faces_at_low_threshold"].items()]
    labels = set()
    for model, name, faces, expected in calls:
        got = model.predict(images[name], faces=faces)
        where = f"{name} (faces={faces}, threshold {model.threshold})"
        assert got.label == expected["label"], where
        assert got.p_fake == pytest.approx(expected["p_fake"], abs=1e-6), where
        assert [f.box for f in got.faces] == [f["box"] for f in expected["faces"]], where
        assert [f.p_fake for f in got.faces] == pytest.approx([f["p_fake"] for f in expected["faces"]], abs=1e-6)
        assert (got.face_found, got.note) == (expected["face_found"], expected["note"]), where
        labels.add(got.label)
    assert labels == {"real", "fake"} and max(len(v["faces"]) for v in record["faces"].values()) == 3


# ---------------------------------------------------------------------------
# One rule for the predictor, the temperature and the threshold


class Redness(nn.Module):
    """Logit = 20 (mean red - 0.6): a face is as fake as it is red."""

    def forward(self, x):
        return 20 * (x[:, 0].mean(dim=(1, 2)) - 0.6)


def photo(faces, shape, seed: int) -> np.ndarray:
    """Drawn faces at (x, y, size), each made redder by ``red`` (x, y, size, red)."""
    img = np.full((*shape, 3), BACKGROUND, np.uint8)
    for k, (x, y, size, red) in enumerate(faces):
        face = draw_face(size, seed + k).astype(np.int16)
        face[..., 0] += red
        img[y : y + size, x : x + size] = np.clip(face, 0, 255).astype(np.uint8)
    return img


def one(red: int, seed: int) -> np.ndarray:
    return photo([(40, 20, 200, red)], (240, 320), seed)


def two(large: int, small: int, seed: int) -> np.ndarray:
    """A larger face on the left, a smaller one on the right."""
    return photo([(20, 20, 210, large), (280, 30, 180, small)], (250, 510), seed)


# HOG searching a 512-pixel copy finds both faces of two() whatever their redness (on a 256-pixel copy, a red
# small face is sometimes missed).
STAGE = {"detect_size": 512, "second_size": 0}
FPR = 0.25


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    """A hand-made "checkpoint" (Redness on dlib_hog crops) whose run's validation split has one- and two-face
    images. Among the reals, each two-face photo has a pale large face and a red small one: judged by its most
    fake face it is the reddest real, judged by its largest face one of the palest."""
    root = tmp_path_factory.mktemp("faces_run")
    images = {
        "real": [one(r, 10 + i) for i, r in enumerate((-40, -30, -20, -10, 0, 10))]
        + [
            two(large, small, 20 + i)
            for i, (large, small) in enumerate(
                zip((-40, -30, -20, -10, -35, -25), (30, 40, 50, 35, 45, 55), strict=True)
            )
        ],
        "fake": [one(r, 30 + i) for i, r in enumerate((40, 50, 60, 70, 80, 90))]
        + [
            two(large, small, 40 + i)
            for i, (large, small) in enumerate(zip((50, 60, 70, 80, 90, 100), (-20, 0, -10, 10, -30, 20), strict=True))
        ],
    }
    samples, labels = [], []
    for label, name in enumerate(("real", "fake")):
        for i, rgb in enumerate(images[name]):
            path = root / "data" / name / f"{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), rgb[..., ::-1])
            samples.append(Sample(str(path), label, "val"))
            labels.append(label)
    write_split(samples, root / "split.csv")
    checkpoint = Checkpoint(Redness(), Preprocess(32), {"name": "redness"}, root / "redness.ckpt", root, hog(**STAGE))
    return checkpoint, [s.path for s in samples], np.array(labels), root


def exported_with(faces_run, name: str, monkeypatch=None, **options):
    checkpoint, *_, root = faces_run
    out = root / f"{name}.onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_calibration, "MIN_TEMPERATURE_IMAGES", 10)
        if monkeypatch:
            monkeypatch(patch)
        report = export(
            ckpt=str(checkpoint.path), out=str(out), threshold=f"fpr:{FPR}", checkpoint=checkpoint, **options
        )
    return out, report


def real_fpr(predictor: Predictor, paths, labels) -> float:
    p = np.array([v.p_fake for v in predictor.predict_batch(paths)])
    return float((p[labels == 0] >= predictor.threshold).mean())


def test_the_validation_fpr_a_file_states_holds_on_images_with_two_faces(faces_run):
    checkpoint, paths, labels, _ = faces_run
    out, report = exported_with(faces_run, "max")
    predictor = Predictor(out)
    verdicts = predictor.predict_batch(paths)
    assert [len(v.faces) for v in verdicts] == [1] * 6 + [2] * 6 + [1] * 6 + [2] * 6  # every face found
    p = np.array([v.p_fake for v in verdicts])
    faces = [np.array([f.p_fake for f in v.faces]) for v in verdicts]
    assert all(p_image == face.max() for p_image, face in zip(p, faces, strict=True))  # the file's rule: max
    meta = metadata(out)
    assert (meta["aggregate_faces"], meta["aggregate_frames"]) == ("max", "mean")
    fpr = float((p[labels == 0] >= predictor.threshold).mean())
    assert fpr <= FPR and float(meta["threshold_val_fpr"]) == pytest.approx(fpr)
    assert predictor.threshold == threshold_at_fpr(p, labels, FPR) == report["threshold"]
    # The temperature was fitted on one logit per image, the max of its faces' (exact: see aggregate_logits).
    assert report["calibration"]["fitted"] and report["calibration"]["aggregate_faces"] == "max"
    per_image = np.array([max(np.log(f / (1 - f))) for f in faces]) * predictor.temperature
    fitted = fit_temperature(per_image, labels)
    assert predictor.temperature == pytest.approx(float(f"{fitted:.4g}"), rel=1e-3)

    # The largest face alone (what export judged before) would give another threshold, and the file would call
    # half the validation reals fake while stating at most a quarter.
    largest = np.array([f[0] for f in faces])
    assert threshold_at_fpr(largest, labels, FPR) < predictor.threshold
    assert float((p[labels == 0] >= threshold_at_fpr(largest, labels, FPR)).mean()) >= 0.5


def test_an_export_judging_the_largest_face_only_would_break_the_stated_fpr(faces_run):
    """The same export with its validation images cut down to their largest face, as before: the check above
    fails for it."""
    checkpoint, paths, labels, _ = faces_run
    original = export_calibration.prepared_images

    def largest_only(*args, **kwargs):
        return [(found[:1], x[:1]) if found else (found, x) for found, x in original(*args, **kwargs)]

    out, _ = exported_with(
        faces_run, "largest", lambda patch: patch.setattr(export_calibration, "prepared_images", largest_only)
    )
    predictor = Predictor(out)
    stated = float(metadata(out)["threshold_val_fpr"])
    assert stated <= FPR < real_fpr(predictor, paths, labels)


def test_a_mean_file_is_judged_and_thresholded_by_the_mean(faces_run):
    checkpoint, paths, labels, root = faces_run
    out, report = exported_with(faces_run, "mean", aggregate_faces="mean", aggregate_frames="max")
    meta = metadata(out)
    assert (meta["aggregate_faces"], meta["aggregate_frames"]) == ("mean", "max")
    predictor = Predictor(out)
    assert (predictor.face_rule, predictor.frame_rule) == ("mean", "max")
    verdicts = predictor.predict_batch(paths)
    for v in verdicts:
        assert v.p_fake == pytest.approx(float(np.mean([f.p_fake for f in v.faces])), abs=1e-12)
    assert any(len(v.faces) == 2 for v in verdicts)
    assert real_fpr(predictor, paths, labels) <= FPR and report["calibration"]["aggregate_faces"] == "mean"


def test_a_hand_written_file_states_its_rules_and_the_predictor_follows_them(tmp_path):
    pre = Preprocess(32)
    rgb = two(-30, 60, seed=3)
    files = {}
    for faces, frames in (("max", "mean"), ("mean", "max"), ("max", "median")):
        path = tmp_path / f"{faces}_{frames}.onnx"
        meta = contract_metadata(pre, 0.5, hog(**STAGE), aggregate_faces=faces, aggregate_frames=frames)
        write_onnx(Redness(), pre, path, meta, opset=18)
        files[faces, frames] = Predictor(path)
    by_max, by_mean = files["max", "mean"].predict(rgb), files["mean", "max"].predict(rgb)
    face_p = [f.p_fake for f in by_max.faces]
    assert len(face_p) == 2 and face_p[0] < 0.5 < face_p[1]  # the pale large face real, the red small one fake
    assert by_max.p_fake == max(face_p) and by_max.label == "fake"
    assert by_mean.p_fake == pytest.approx(np.mean(face_p)) and [f.p_fake for f in by_mean.faces] == face_p

    # Frames: a video whose face gets redder, judged by each frame rule.
    frames = []
    for t in range(4):
        frame = np.full((240, 320, 3), BACKGROUND, np.uint8)
        face = draw_face(200, t).astype(np.int16)
        face[..., 0] += 25 * t
        frame[20:220, 60:260] = np.clip(face, 0, 255).astype(np.uint8)
        frames.append(frame)
    video = write_video(tmp_path / "redder.mp4", frames, fps=4)
    for (_, rule), predictor in files.items():
        judged = predictor.predict_video(video, frames=4)
        per_frame = [f.p_fake for f in judged.frames]
        assert None not in per_frame and len(set(per_frame)) == 4
        assert judged.p_fake == pytest.approx(aggregate_frames(per_frame, rule)), rule
