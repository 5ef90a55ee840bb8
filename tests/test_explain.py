"""Explanations: each method finds the one patch a model looks at, ONNX and torch agree, the CLI writes the PNGs."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import FACES_MINI, ROOT, make_image, make_net
from torch import nn

from deepfake import explain
from deepfake.commands.infer import main as infer_main
from deepfake.contract import contract_metadata
from deepfake.errors import UserError
from deepfake.explain import explain_checkpoint, explain_onnx, feature_layer, supported_methods
from deepfake.export import write_onnx
from deepfake.models import attention as attention_mod
from deepfake.models import create_model
from deepfake.predictor import Predictor
from deepfake.preprocess import Preprocess
from deepfake.training.checkpoint import Checkpoint, load_checkpoint

SIZE = 64
# The patch that matters, in model pixels: off-centre and off the diagonal, so a transposed,
# flipped or wrongly resized map puts its mass elsewhere.
ROWS, COLS = slice(8, 24), slice(40, 56)
# Zero after normalisation is mid-grey, not the patch's white nor the noise around it.
PREPROCESS = Preprocess(SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
# Input images are 96 x 128: the map must be resized back to a non-square image.
HEIGHT, WIDTH = 96, 128


def patch_image(seed: int = 0) -> np.ndarray:
    """Random RGB noise with a white patch exactly where the model looks, at image resolution."""
    rgb = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[image_patch()] = 255
    return rgb


def image_patch() -> tuple[slice, slice]:
    """The patch in image pixels (the sizes divide exactly, so the resize to 64 x 64 keeps its edges)."""
    return (
        slice(ROWS.start * HEIGHT // SIZE, ROWS.stop * HEIGHT // SIZE),
        slice(COLS.start * WIDTH // SIZE, COLS.stop * WIDTH // SIZE),
    )


def mass_on_patch(heatmap: np.ndarray) -> float:
    assert heatmap.shape == (HEIGHT, WIDTH) and heatmap.dtype == np.float32
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0 and heatmap.sum() > 0
    return float(heatmap[image_patch()].sum() / heatmap.sum())


class PatchMean(nn.Module):
    """Logit = mean of the patch's normalised pixels - 1: nothing outside the patch can matter."""

    mean, std = PREPROCESS.mean, PREPROCESS.std

    def forward(self, x):
        return x[:, :, ROWS, COLS].mean(dim=(1, 2, 3)) - 1.0


class Mask(nn.Module):
    def __init__(self, side: int, rows: slice, cols: slice):
        super().__init__()
        mask = torch.zeros(1, 1, side, side)
        mask[..., rows, cols] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        return x * self.mask


class MaskedConv(nn.Module):
    """Conv features that are zero outside the patch, pooled to a logit: Grad-CAM's territory."""

    mean, std = PREPROCESS.mean, PREPROCESS.std

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        nn.init.constant_(conv.weight, 1 / 27)
        nn.init.zeros_(conv.bias)
        half = slice(ROWS.start // 2, ROWS.stop // 2), slice(COLS.start // 2, COLS.stop // 2)
        self.features = nn.Sequential(conv, nn.ReLU(), Mask(SIZE // 2, *half))

    def forward(self, x):
        return self.features(x).mean(dim=(1, 2, 3)) * 8 - 1.0


def checkpoint_of(net: nn.Module) -> Checkpoint:
    return Checkpoint(net.eval(), PREPROCESS, {"name": type(net).__name__}, path=None, run_dir=None)


def test_occlusion_through_the_onnx_predictor_finds_the_patch(tmp_path):
    path = tmp_path / "patch.onnx"
    write_onnx(PatchMean(), PREPROCESS, path, contract_metadata(PREPROCESS, model_name="patch"), opset=18)
    predictor = Predictor(path)
    assert supported_methods(predictor) == ("occlusion",)
    image = patch_image()
    result = explain_onnx(predictor, image, "occlusion")
    assert result.method == "occlusion" and result.p_fake == pytest.approx(predictor.predict(image).p_fake)
    assert mass_on_patch(result.heatmap) > 0.7
    # Any input Predictor.predict takes: an encoded PNG gives the same map.
    png = cv2.imencode(".png", image[..., ::-1])[1].tobytes()
    assert np.allclose(explain_onnx(predictor, png).heatmap, result.heatmap, atol=1e-5)


@pytest.mark.parametrize("method", ["ig", "occlusion"])
def test_ig_and_occlusion_on_a_checkpoint_find_the_patch(method):
    result = explain_checkpoint(checkpoint_of(PatchMean()), patch_image(1), method)
    assert result.method == method and mass_on_patch(result.heatmap) > 0.7


def test_gradcam_finds_the_patch():
    net = MaskedConv()
    assert feature_layer(net, torch.zeros(1, 3, SIZE, SIZE)) is net.features
    result = explain_checkpoint(checkpoint_of(net), patch_image(2), "gradcam")
    assert mass_on_patch(result.heatmap) > 0.7


class TinyBackbone(nn.Module):
    """A timm-shaped stand-in (forward_features, num_features): 4x4 block means, 16 x 16 features at 64 px."""

    num_features = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, self.num_features, 4, stride=4)
        nn.init.constant_(self.conv.weight, 1 / 48)
        nn.init.zeros_(self.conv.bias)

    def forward_features(self, x):
        return torch.relu(self.conv(x))


@pytest.fixture
def attention_net(monkeypatch):
    """An attention-head network whose mask is high where the features are (the white patch) and low elsewhere."""
    monkeypatch.setattr(attention_mod, "create_backbone", lambda *args, **kwargs: TinyBackbone())
    monkeypatch.setattr(attention_mod, "data_config", lambda backbone: (PREPROCESS.mean, PREPROCESS.std))
    net = create_model("attention", backbone="tiny", dropout=0.5, hidden=128)
    convs = [m for m in net.head.attention if isinstance(m, nn.Conv2d)]
    for conv in convs:  # every layer averages its inputs: the mask follows the mean feature
        nn.init.constant_(conv.weight, 1 / conv.in_channels)
        nn.init.zeros_(conv.bias)
    with torch.no_grad():
        convs[-1].weight.mul_(10.0)
        convs[-1].bias.fill_(-8.0)
    return net.eval()


def test_attention_map_finds_the_patch_and_the_onnx_output_matches_torch(attention_net, tmp_path):
    image = patch_image(3)
    native = explain_checkpoint(checkpoint_of(attention_net), image, "attention")
    assert mass_on_patch(native.heatmap) > 0.7

    path = tmp_path / "att.onnx"
    write_onnx(attention_net, PREPROCESS, path, contract_metadata(PREPROCESS, model_name="att"), opset=18)
    predictor = Predictor(path)
    assert predictor.has_attention and predictor.metadata["attention_output"] == "attention"
    assert [o.name for o in predictor.session.get_outputs()] == ["p_fake", "logit", "attention"]
    assert supported_methods(predictor) == ("occlusion", "attention")
    batch = np.stack([predictor.model_input(patch_image(s)) for s in (3, 4)])
    p, masks = predictor.p_fake_with_attention(batch)
    with torch.no_grad():
        logit, torch_masks = attention_net(torch.from_numpy(batch), return_mask=True)
    assert masks.shape == (2, SIZE // 4, SIZE // 4)
    assert np.allclose(masks, torch_masks[:, 0].numpy(), atol=1e-5)
    assert np.allclose(p, torch.sigmoid(logit).numpy(), atol=1e-5)
    assert np.allclose(predictor.p_fake(batch), p)

    onnx_result = explain_onnx(predictor, image, "attention")
    assert np.allclose(onnx_result.heatmap, native.heatmap, atol=1e-4)
    assert onnx_result.p_fake == pytest.approx(native.p_fake, abs=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        ("cnn",),
        ("cnn_deep",),
        ("hfnet", "model.net.stem_stride=2", "model.net.widths=[8,16]", "model.net.global_max=true"),
        ("mobilenetv2", "model.backbone=test_efficientnet"),
        ("effb7_att", "model.backbone=test_efficientnet"),
    ],
    ids=lambda c: c[0],
)
def test_gradcam_uses_the_last_feature_map_of_every_architecture(config):
    """Found by structure: the attention head's own 1x1 convs must not be mistaken for the features."""
    net = make_net(*config, image_size=SIZE).eval()
    x = torch.from_numpy(Preprocess(SIZE, net.mean, net.std)(patch_image()))[None]
    layer = feature_layer(net, x)
    outputs = []
    handle = layer.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    with torch.no_grad():
        net(x)
    handle.remove()
    assert outputs[-1].dim() == 4 and min(outputs[-1].shape[-2:]) > 1
    if config[0] == "effb7_att":
        assert outputs[-1].shape[1] == net.backbone.num_features
    result = explain_checkpoint(checkpoint_of(net), patch_image(), "gradcam")
    assert result.heatmap.shape == (HEIGHT, WIDTH) and np.isfinite(result.heatmap).all()


def test_overlay_is_rgb_red_where_hot_and_png_round_trips():
    grey = np.full((20, 30, 3), 128, np.uint8)
    heat = np.zeros((20, 30), np.float32)
    heat[5:10, 5:10] = 1.0
    result = explain.make_explanation("occlusion", grey, heat, 0.9)
    hot, cold = result.overlay[7, 7].astype(int), result.overlay[15, 25].astype(int)
    assert hot[0] > hot[2] + 50 and cold[2] > cold[0] + 50  # JET red on top, blue elsewhere, in RGB order
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(result.png(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, result.overlay)


def test_unsupported_methods_raise_clear_errors(exported, trained_run):
    out, _, run, data = exported
    predictor = Predictor(out)
    assert not predictor.has_attention and [o.name for o in predictor.session.get_outputs()] == ["p_fake", "logit"]
    image = next((data / "Fake").iterdir())
    with pytest.raises(UserError, match="no attention head"):
        explain_onnx(predictor, image, "attention")
    for method in ("gradcam", "ig"):
        with pytest.raises(UserError, match="ONNX file does not have"):
            explain_onnx(predictor, image, method)
    checkpoint = load_checkpoint(run)
    with pytest.raises(UserError, match="no attention head"):
        explain_checkpoint(checkpoint, image, "attention")
    with pytest.raises(UserError, match="not one of occlusion, gradcam, ig, attention"):
        explain_checkpoint(checkpoint, image, "lime")
    with pytest.raises(UserError, match="no attention output"):
        predictor.p_fake_with_attention(np.zeros((1, 3, 32, 32), np.float32))


def test_infer_explain_writes_pngs_of_each_image_size_next_to_the_usual_verdicts(exported, tmp_path, capsys):
    out, _, run, data = exported
    fake = make_image(tmp_path / "a" / "face.png", 1, seed=5, size=57)
    twin = make_image(tmp_path / "b" / "face.jpg", 0, seed=6, size=40)  # same stem: must not overwrite
    bad = tmp_path / "broken.jpg"
    whole = make_image(tmp_path / "whole.jpg", 1, seed=9, size=64).read_bytes()
    bad.write_bytes(whole[: len(whole) * 3 // 4])  # a download cut short: the header is whole, the end is not
    heat = tmp_path / "heat" / "new"

    assert infer_main(["--onnx", str(out), str(fake), str(twin)]) == 0
    plain = capsys.readouterr().out
    args = ["--onnx", str(out), "--explain", "occlusion", "--out", str(heat), str(fake), str(bad), str(twin)]
    assert infer_main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == plain  # the verdict lines are unchanged; the bad file is reported and skipped
    assert f"error: {bad}: truncated JPEG" in captured.err
    for name, size in [("face.occlusion.png", 57), ("face-2.occlusion.png", 40)]:
        png = cv2.imread(str(heat / name))
        assert png is not None and png.shape == (size, size, 3)

    assert infer_main(["--ckpt", str(run), "--json", "--explain", "gradcam", "--out", str(heat), str(fake)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["explanation"] == str(heat / "face.gradcam.png") and cv2.imread(row["explanation"]).shape == (57, 57, 3)
    assert row["label"] in ("real", "fake")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--explain", "gradcam", "--out", "x"], "--explain gradcam needs --ckpt"),
        (["--explain", "occlusion"], "needs --out DIR"),
        (["--explain", "attention", "--out", "{tmp}/x"], "no attention head"),
    ],
)
def test_infer_explain_refuses_what_cannot_work_in_one_line(exported, tmp_path, args, message):
    out, _, _, data = exported
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = subprocess.run(
        [sys.executable, str(ROOT / "infer.py"), "--onnx", str(out), *args, str(data / "Fake")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not result.stdout


def test_plain_infer_run_still_imports_no_torch(exported):
    out, _, _, data = exported
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'captum', 'lightning', 'timm'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from deepfake.commands.infer import main\n"
        f"sys.exit(main(['--onnx', {str(out)!r}, {str(data / 'Fake')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 20


@pytest.mark.skipif(not (FACES_MINI / "Fake").is_dir(), reason=f"{FACES_MINI} not found")
def test_bundled_model_occlusion_looks_at_the_face_on_faces_mini():
    """faces-mini is aligned like FFHQ: the face fills the centre, so that is where the evidence should be."""
    predictor = Predictor()
    fakes = sorted((FACES_MINI / "Fake").iterdir())[:6]
    centre, border = [], []
    for path in fakes:
        heat = explain_onnx(predictor, path).heatmap
        h, w = heat.shape
        inner = np.zeros_like(heat, bool)
        inner[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
        centre.append(heat[inner].mean())
        border.append(heat[~inner].mean())
    assert np.mean(centre) > 2 * np.mean(border)


@pytest.mark.slow
def test_data_loader_workers_start_after_an_explanation_in_the_same_process(tmp_path):
    """An overlay of a large image starts OpenCV's thread pool; loader workers forked afterwards used to hang forever in
    cv2.setNumThreads. Run in a subprocess with a timeout, so a regression fails instead of hanging the suite."""
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from conftest import make_class_folders\n"
        "from deepfake import explain\n"
        "from deepfake.data.datamodule import DeepfakeDataModule\n"
        "from helpers import data_config\n"
        "from deepfake.preprocess import Preprocess\n"
        "explain.overlay(np.zeros((1024, 1024, 3), np.uint8), np.ones((1024, 1024), np.float32))\n"
        f"settings = data_config(make_class_folders(Path({str(tmp_path)!r}), 8, 8), batch_size=4, num_workers=2)\n"
        "dm = DeepfakeDataModule(settings, Preprocess(16), seed=0)\n"
        "dm.collect_samples(); dm.setup()\n"
        "print(sum(1 for _ in dm.train_dataloader()))\n"
    )
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("data loader workers hung after an explanation (cv2.setNumThreads after fork)")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) >= 1
