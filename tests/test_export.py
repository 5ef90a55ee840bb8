"""Export to ONNX and predict with onnxruntime: contract in the file, parity with training, label and colour order."""

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import export_cfg, make_image
from torch import nn

from deepfake import export as export_mod
from deepfake.contract import contract_metadata
from deepfake.data.dataset import ImageDataset
from deepfake.errors import ConfigError, ImageError, ModelError
from deepfake.export import ExportOptions, describe_export, export, write_onnx
from deepfake.predictor import Predictor
from deepfake.preprocess import Preprocess
from deepfake.samples import Sample
from deepfake.training.checkpoint import load_checkpoint, resolve_checkpoint


def test_export_writes_checked_onnx_with_dynamic_batch_and_contract(exported):
    out, report, run, _ = exported
    model = onnx.load(out)
    onnx.checker.check_model(model)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["labels"]) == ["real", "fake"] and meta["positive_class"] == "fake"
    assert (meta["input_size"], meta["colour_order"], meta["resize"]) == ("32", "RGB", "area")
    assert float(meta["scale"]) == pytest.approx(1 / 255) and json.loads(meta["mean"]) == [0.0, 0.0, 0.0]
    assert float(meta["threshold"]) == 0.5 and meta["model_name"] == "hfnet"
    trained = json.loads((run / "metrics.json").read_text())
    assert json.loads(meta["test_metrics"])["auroc"] == round(trained["test/auroc"], 4)
    assert json.loads(meta["data"])["train"] == trained["data"]["train"]
    assert report["max_abs_delta_p_fake"] <= 1e-4


def test_predictor_matches_training_preprocessing_and_pytorch(exported):
    """Training pipeline (dataset -> tensor -> network) and Predictor on the file agree within 1e-4."""
    out, _, run, data = exported
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    predictor = Predictor(out)
    for path, label in [(next((data / "Fake").iterdir()), 1), (next((data / "Real").iterdir()), 0)]:
        x, *_ = ImageDataset([Sample(str(path), label)], checkpoint.preprocess)[0]
        with torch.no_grad():  # the file's p_fake is calibrated: sigmoid(logit / its temperature)
            p_torch = torch.sigmoid(checkpoint.net(x[None]) / predictor.temperature).item()
        assert abs(predictor.predict(path).p_fake - p_torch) <= 1e-4


def test_label_order_fake_reads_fake_end_to_end(exported):
    out, _, _, data = exported
    predictor = Predictor(out)
    fakes = predictor.predict_batch(sorted((data / "Fake").iterdir()))
    reals = predictor.predict_batch(sorted((data / "Real").iterdir()))
    # Swapped labels or a sigmoid read backwards would rank the noisy fakes below the smooth reals.
    assert min(p.p_fake for p in fakes) > max(p.p_fake for p in reals)
    assert sum(p.label == "fake" for p in fakes) >= 15 and sum(p.label == "real" for p in reals) >= 15
    assert all(p.confidence == (p.p_fake if p.label == "fake" else 1 - p.p_fake) for p in fakes + reals)


def test_png_path_bytes_array_and_pil_give_the_same_answer(exported, tmp_path):
    from PIL import Image

    out, *_ = exported
    predictor = Predictor(out)
    png = make_image(tmp_path / "face.png", 1, seed=7, size=57)  # odd size: the resize is exercised too
    rgb = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    answers = {
        predictor.predict(png).p_fake,
        predictor.predict(str(png)).p_fake,
        predictor.predict(png.read_bytes()).p_fake,
        predictor.predict(rgb).p_fake,
        predictor.predict(Image.open(png)).p_fake,
        predictor.predict_batch([rgb], batch_size=1)[0].p_fake,
    }
    assert len(answers) == 1


def test_batch_results_do_not_depend_on_batch_size(exported):
    out, _, _, data = exported
    predictor = Predictor(out)
    files = sorted((data / "Fake").iterdir())[:7]
    one = [p.p_fake for p in predictor.predict_batch(files, batch_size=1)]
    three = [p.p_fake for p in predictor.predict_batch(files, batch_size=3)]
    assert np.allclose(one, three, atol=1e-6)


class RedMeansFake(nn.Module):
    """Logit = 20 * (mean red - mean blue): only correct colour order gives the right verdict."""

    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def forward(self, x):
        return 20 * (x[:, 0].mean(dim=(1, 2)) - x[:, 2].mean(dim=(1, 2)))


def test_colour_order_and_sigmoid_direction_survive_export(tmp_path):
    """The reference apps fed BGR to an RGB model and read the sigmoid backwards; this catches both."""
    path = tmp_path / "red.onnx"
    write_onnx(RedMeansFake(), Preprocess(16), path, contract_metadata(Preprocess(16)), opset=18)
    predictor = Predictor(path)
    red_jpeg = cv2.imencode(".jpg", np.full((40, 40, 3), (0, 0, 255), np.uint8))[1].tobytes()  # BGR red
    blue_rgb = np.zeros((40, 40, 3), np.uint8)
    blue_rgb[..., 2] = 255
    assert predictor.predict(red_jpeg).label == "fake" and predictor.predict(red_jpeg).p_fake > 0.99
    assert predictor.predict(blue_rgb).label == "real" and predictor.predict(blue_rgb).p_fake < 0.01


def test_export_refuses_a_file_that_disagrees_with_pytorch(trained_run, monkeypatch, tmp_path):
    run, _ = trained_run
    real = export_mod.torch_p_fake
    monkeypatch.setattr(export_mod, "torch_p_fake", lambda net, batch: real(net, batch) + 1e-3)
    out = tmp_path / "model.onnx"
    with pytest.raises(ModelError, match="differs from PyTorch"):
        export(export_cfg(f"ckpt={run}/checkpoints/last.ckpt", f"out={out}"))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_fp16_and_int8_variants_report_their_drop_and_keep_the_contract(trained_run, tmp_path, capsys):
    run, data = trained_run
    out = tmp_path / "m.onnx"
    report = export(
        export_cfg(f"ckpt={run}/checkpoints/last.ckpt", f"out={out}", "fp16=true", "int8=true", f"eval_data={data}")
    )
    variants = report["variants"]
    assert variants["eval_images"] == 40
    for name in ("fp16", "int8"):
        path = tmp_path / f"m.{name}.onnx"
        assert variants[name]["out"] == str(path) and path.stat().st_size < out.stat().st_size
        assert variants[name]["auroc_drop"] == pytest.approx(variants["fp32"]["auroc"] - variants[name]["auroc"])
        assert Predictor(path).preprocess == Predictor(out).preprocess
    printed = describe_export(report)
    assert "fp16" in printed and "int8" in printed and "drop" in printed


def test_an_evaluation_image_that_is_gone_is_named_and_nothing_is_written(trained_run, tmp_path):
    run, data = trained_run
    manifest = tmp_path / "eval.csv"
    real = sorted((data / "Real").iterdir())[0]
    manifest.write_text(f"path,label\n{real},real\n{tmp_path / 'moved' / 'gone.jpg'},fake\n")
    out = tmp_path / "model.onnx"
    with pytest.raises(ImageError, match=r"evaluation image .*moved/gone\.jpg: cannot read file"):
        export(export_cfg(f"ckpt={run}/checkpoints/last.ckpt", f"out={out}", f"eval_data={manifest}"))
    assert not out.exists()


def test_bad_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="corrupt or not a checkpoint"):
        load_checkpoint(bad)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"payload": RedMeansFake()}, pickled)  # loading it would need code: refused
    with pytest.raises(ModelError, match="weights_only"):
        load_checkpoint(pickled)


def test_a_run_directory_exports_its_best_checkpoint(trained_run, tmp_path):
    run, _ = trained_run
    best = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
    assert resolve_checkpoint(run) == Path(best) and Path(best).name != "last.ckpt"
    assert resolve_checkpoint(run / "checkpoints" / "last.ckpt").name == "last.ckpt"
    with pytest.raises(ModelError, match="directory without"):
        resolve_checkpoint(tmp_path)


# ---------------------------------------------------------------------------
# Checkpoints load anywhere, offline; export from Python without Hydra


@pytest.mark.slow
def test_a_pretrained_timm_run_exports_offline_after_its_weights_file_is_gone(
    compose_cfg, folder_dataset, tmp_path, monkeypatch
):
    """Loading a checkpoint rebuilds the network without pretrained weights: it needs neither the hub nor
    model.weights_file, which may have moved since training."""
    import socket

    from conftest import make_net
    from safetensors.torch import save_file

    from deepfake.training.train import train

    weights = tmp_path / "imagenet.safetensors"
    start = make_net("mobilenetv2", "model.backbone=test_efficientnet")
    save_file({k.removeprefix("net."): v for k, v in start.state_dict().items() if "classifier" not in k}, weights)
    overrides = ["model=mobilenetv2", "model.backbone=test_efficientnet", "model.pretrained=true"]
    overrides += [f"model.weights_file={weights}", f"data.root={folder_dataset}", "trainer.max_epochs=1"]
    train(compose_cfg(*overrides))
    weights.unlink()
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the network is blocked in this test")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)

    out = tmp_path / "offline.onnx"
    report = export(ckpt=str(tmp_path / "run"), out=str(out))
    assert report["max_abs_delta_p_fake"] <= 1e-4 and not attempts
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["model_name"] == "test_efficientnet"  # what was trained, not the config's file name
    assert json.loads(meta["model_config"])["pretrained"] is True  # recorded as trained, yet never fetched


def test_export_from_python_takes_keywords_and_names_bad_options(trained_run, tmp_path):
    run, _ = trained_run
    report = export(ckpt=str(run), out=str(tmp_path / "m.onnx"), threshold=0.4, opset=18)
    assert Predictor(report["out"]).threshold == 0.4
    for bad, message in [
        ({}, "ckpt=.* is required"),
        ({"ckpt": str(run), "threshold": 1.0}, "threshold=1.0 must be strictly between 0 and 1"),
        ({"ckpt": str(run), "opset": 12}, "opset=12: ONNX opset 17 or later"),
        ({"ckpt": str(run), "eval_split": "training"}, "eval_split=training is not one of train, val, test"),
        ({"ckpt": str(run), "tolerance": 0}, "tolerance=0 must be positive"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ExportOptions(**bad)


def test_a_checkpoint_of_the_earlier_flat_config_still_loads(trained_run, tmp_path):
    """deepfake 0.1 saved the architecture's options and the optimiser's side by side in one flat model dict."""
    run, _ = trained_run
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    model = saved["hyper_parameters"]["model"]
    saved["hyper_parameters"]["model"] = {
        "name": "hfnet",
        **model["net"],
        "lr": 0.01,
        "weight_decay": 1e-4,
        "lr_patience": 2,
        "lr_factor": 0.5,
        "mixup": 0.0,
    }
    torch.save(saved, tmp_path / "old.ckpt")
    old, new = load_checkpoint(tmp_path / "old.ckpt"), load_checkpoint(run / "checkpoints" / "last.ckpt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(old.net(x), new.net(x))
    assert old.name == "hfnet" and old.preprocess == new.preprocess
