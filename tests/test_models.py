"""Every model config builds and trains a fast_dev_run; the attention head does what it says."""

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose_train, make_net, model_cfg
from helpers import fake_landmark_dataset

from deepfake.errors import ConfigError, ModelError
from deepfake.models import create_model
from deepfake.models.attention import AttentionGAPHead
from deepfake.training.train import train

MODEL_CONFIGS = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))
TIMM = {"vgg16", "xception", "mobilenetv2", "effb7", "effb7_att"}
# One fast_dev_run of a timm backbone takes 7-30 s on 2 cores: the slow tier.
SLOW_MODELS = [pytest.param(n, marks=pytest.mark.slow) if n in TIMM else n for n in MODEL_CONFIGS]


def test_all_seven_detectors_have_configs():
    assert set(MODEL_CONFIGS) >= {"cnn", "cnn_deep"} | TIMM


@pytest.mark.parametrize("name", SLOW_MODELS)
def test_every_model_config_runs_fast_dev_run(name, folder_dataset, compose_cfg, tmp_path):
    overrides = [f"model={name}", f"data.root={folder_dataset}", "++trainer.fast_dev_run=true", "data.batch_size=4"]
    if name in TIMM:
        overrides.append("model.pretrained=false")
    metrics = train(compose_cfg(*overrides))
    assert {"test/acc", "test/precision", "test/recall", "test/f1", "test/auroc"} <= metrics.keys()
    assert json.loads(Path(tmp_path / "run" / "metrics.json").read_text())["test/auroc"] == metrics["test/auroc"]


def test_timm_configs_normalise_with_the_backbones_own_statistics():
    xception = make_net("xception")
    mobilenet = make_net("mobilenetv2")
    assert xception.mean == (0.5, 0.5, 0.5)
    assert mobilenet.mean == pytest.approx((0.485, 0.456, 0.406))
    assert make_net("cnn").mean == (0.0, 0.0, 0.0)


def test_attention_head_pools_a_mask_weighted_average_of_the_features():
    head = AttentionGAPHead(channels=6, hidden=4, dropout=0.0).eval()
    features = torch.randn(2, 6, 5, 5)
    normed = head.norm(features)
    for value in (0.05, 0.9):  # a uniform mask of any strength must give the plain average
        head.attention = torch.nn.Sequential(torch.nn.Conv2d(6, 1, 1), torch.nn.Sigmoid())
        torch.nn.init.zeros_(head.attention[0].weight)
        torch.nn.init.constant_(head.attention[0].bias, torch.logit(torch.tensor(value)).item())
        logits, mask = head(features)
        assert torch.allclose(mask, torch.full_like(mask, value), atol=1e-6)
        assert torch.allclose(logits, head.classifier(normed.mean(dim=(2, 3))).squeeze(1), atol=1e-5)


def test_attention_head_stays_a_weighted_average_when_the_whole_mask_is_near_zero():
    """A mask of sigmoid(-120) everywhere underflows to 0 in float32. The pooled vector is still the
    mask-weighted average (here the plain one, as the mask is uniform): the ratio of two pooled means
    gave 0 / 0, clamped to 0, and PyTorch and onnxruntime disagreed on such inputs by thousands."""
    head = AttentionGAPHead(channels=3, hidden=4, dropout=0.0).eval()
    features = torch.randn(2, 3, 2, 2)
    head.attention = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.Sigmoid())
    torch.nn.init.zeros_(head.attention[0].weight)
    torch.nn.init.constant_(head.attention[0].bias, -120.0)
    with torch.no_grad():
        logits, mask = head(features)
        expected = head.classifier(head.norm(features).mean(dim=(2, 3))).squeeze(1)
    assert mask.max() == 0
    assert torch.allclose(logits, expected, atol=1e-5)


def test_attention_model_returns_its_spatial_mask():
    model = make_net("effb7_att", "model.backbone=mobilenetv2", image_size=64).eval()
    logits, mask = model(torch.rand(2, 3, 64, 64), return_mask=True)
    assert logits.shape == (2,)
    assert mask.shape == (2, 1, 2, 2) and 0 <= mask.min() and mask.max() <= 1


def test_missing_weights_fail_fast_naming_the_fixes(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    net = model_cfg("mobilenetv2")["net"]
    with pytest.raises(ModelError) as err:
        create_model(**net, pretrained=True)
    assert "model.pretrained=false" in str(err.value) and "model.weights_file" in str(err.value)
    with pytest.raises(ModelError, match="no such file"):
        create_model(**net, pretrained=True, weights_file=str(tmp_path / "missing.safetensors"))


def test_local_weights_file_is_loaded(tmp_path):
    from safetensors.torch import save_file

    net = model_cfg("mobilenetv2")["net"]
    source = create_model(**net)
    weights = {k.removeprefix("net."): v for k, v in source.state_dict().items() if "classifier" not in k}
    save_file(weights, str(tmp_path / "w.safetensors"))
    loaded = create_model(**net, pretrained=True, weights_file=str(tmp_path / "w.safetensors"))
    assert torch.equal(loaded.net.conv_stem.weight, source.net.conv_stem.weight)


def test_bad_model_settings_are_named(compose_cfg, folder_dataset, tmp_path):
    with pytest.raises(ModelError, match="not a timm model"):
        make_net("vgg16", "model.backbone=no_such_net")
    with pytest.raises(ModelError, match="model.net.arch='nope'"):
        train(compose_cfg(f"data.root={folder_dataset}", "model.net.arch=nope"))
    with pytest.raises(ConfigError, match="model.net.colour is not an option of arch 'cnn'"):
        train(compose_cfg(f"data.root={folder_dataset}", "+model.net.colour=bgr"))
    with pytest.raises(ConfigError, match="model.colour is not a model setting.*model.net.colour"):
        train(compose_cfg(f"data.root={folder_dataset}", "+model.colour=bgr"))
    with pytest.raises(ModelError, match="arch 'cnn' is trained from scratch.*model.pretrained=false"):
        train(compose_cfg(f"data.root={folder_dataset}", "model.pretrained=true"))
    for override, message in [
        ("model.lr=-1", r"model.optimizer \(torch.optim.Adam\) cannot be used: Invalid learning rate: -1"),
        ("model.optimizer._target_=torch.optim.Nope", "model.optimizer"),
        ("~model.optimizer._partial_", "_partial_: true"),
        ("model.scheduler.mode=sideways", "model.scheduler"),
    ]:
        with pytest.raises(ConfigError, match=message):
            train(compose_cfg(f"data.root={folder_dataset}", "trainer.max_epochs=1", override))
        assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training: no crash checkpoint


EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
# EfficientNet-B7 at 380 px (sbi_effb7_att): ~20 s for one fast_dev_run on 2 cores, the slow tier.
SLOW_EXPERIMENTS = [pytest.param(n, marks=pytest.mark.slow) if "effb7" in n else n for n in EXPERIMENTS]


@pytest.mark.parametrize("name", SLOW_EXPERIMENTS)
def test_every_experiment_config_runs_fast_dev_run(name, folder_dataset, compose_cfg, monkeypatch):
    # generated images: no real face
    monkeypatch.setattr("deepfake.data.datamodule.landmark_dataset", fake_landmark_dataset)
    cfg = compose_cfg(
        f"experiment={name}",
        f"data.root={folder_dataset}",
        "data.manifest=null",
        "data.group_by=null",
        "model.pretrained=false",
        "++trainer.fast_dev_run=true",
    )
    assert "test/auroc" in train(cfg)
    # Runs with pseudo-fakes show them: sbi_samples.png in the run directory.
    assert (Path(cfg.run_dir) / "sbi_samples.png").is_file() == (cfg.data.pseudo_fakes == "sbi")


@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp", "default"])
def test_trainer_presets_compose(preset, compose_cfg, folder_dataset):
    cfg = compose_cfg(f"trainer={preset}", f"data.root={folder_dataset}")
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if preset in ("gpu", "ddp"):
        assert cfg.trainer.precision == "mixed" and cfg.trainer.accelerator == "gpu"
    if preset == "ddp":
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm


def test_mixed_precision_picks_fp16_on_t4_and_bf16_on_ampere(monkeypatch):
    from deepfake.training.train import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("mixed") == "16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("mixed") == "bf16-mixed"
    assert resolve_precision("32-true") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("mixed") == "32-true"


@pytest.mark.gpu
def test_the_gpu_preset_trains_a_step_in_mixed_precision(compose_cfg, folder_dataset):
    """trainer=gpu on a real GPU: one fast_dev_run batch of train, val and test in bf16 or fp16 autocast."""
    from deepfake.training.train import resolve_precision

    cfg = compose_cfg("trainer=gpu", f"data.root={folder_dataset}", "++trainer.fast_dev_run=true")
    assert resolve_precision(cfg.trainer.precision) in ("bf16-mixed", "16-mixed")
    assert "test/auroc" in train(cfg)


def test_hfnet_highpass_adds_the_noise_residual_and_grid_head_keeps_layout():
    from deepfake.models.hfnet import HighPass

    flat = torch.full((1, 3, 8, 8), 0.5)
    out = HighPass()(flat)
    assert out.shape == (1, 6, 8, 8) and torch.equal(out[:, :3], flat)
    assert out[:, 3:, 1:-1, 1:-1].abs().max() < 1e-6  # a flat image has no residual inside the border
    grid = make_net("hfnet", "model.net.stem_stride=2", "model.net.pool_grid=4", image_size=64).eval()
    assert grid.head[-1].in_features == 128 * 16 and grid(torch.rand(3, 3, 64, 64)).shape == (3,)
    both = make_net("hfnet", "model.net.stem_stride=2", "model.net.global_max=true", image_size=64).eval()
    assert both.head[-1].in_features == 128 * 2 and both(torch.rand(3, 3, 64, 64)).shape == (3,)
    with pytest.raises(ModelError, match="pool_grid"):
        make_net("hfnet", "model.net.pool_grid=0")
    with pytest.raises(ModelError, match="too small"):
        make_net("hfnet", "model.net.stem_stride=8", image_size=16)


# ---------------------------------------------------------------------------
# Optimiser and schedule come from config


def _optimisers(module):
    found = module.configure_optimizers()
    if isinstance(found, dict):
        return found["optimizer"], found["lr_scheduler"]["scheduler"]
    return found, None


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_config_has_optimizer_and_scheduler_nodes_that_the_module_calls(name):
    from deepfake.training.module import DeepfakeLitModule

    config = model_cfg(name, "model.pretrained=false")
    for key in ("optimizer", "scheduler"):
        assert config[key]["_target_"].startswith("torch.optim.") and config[key]["_partial_"] is True
    optimizer, scheduler = _optimisers(DeepfakeLitModule(model=config, image_size=32))
    assert type(optimizer).__name__ == config["optimizer"]["_target_"].rsplit(".", 1)[1]
    assert optimizer.param_groups[0]["lr"] == config["lr"] == config["optimizer"]["lr"]
    assert type(scheduler).__name__ == config["scheduler"]["_target_"].rsplit(".", 1)[1]


def test_any_torch_optimiser_or_schedule_is_one_override_away():
    from deepfake.training.module import DeepfakeLitModule

    def built(*overrides):
        return _optimisers(DeepfakeLitModule(model=model_cfg("cnn", *overrides), image_size=32))

    sgd, _ = built("model.optimizer._target_=torch.optim.SGD", "+model.optimizer.momentum=0.9", "model.lr=0.05")
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["lr"] == 0.05
    adamw, cosine = built("model/optimizer=adamw", "model/scheduler=cosine", "trainer.max_epochs=7")
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(cosine, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert cosine.T_max == 7
    constant, none = built("~model/scheduler")
    assert isinstance(constant, torch.optim.Adam) and none is None


def test_the_loss_and_the_plateau_schedules_metric_come_from_config():
    from deepfake.training.module import DeepfakeLitModule

    def module(*overrides):
        return DeepfakeLitModule(model=model_cfg("cnn", *overrides), image_size=32)

    plain = module()
    assert isinstance(plain.loss, torch.nn.BCEWithLogitsLoss)
    assert plain.configure_optimizers()["lr_scheduler"]["monitor"] == "val/loss"
    smooth = module("model.loss._target_=torch.nn.SmoothL1Loss")
    assert isinstance(smooth.loss, torch.nn.SmoothL1Loss)
    found = module("model.scheduler.monitor=val/auroc", "model.scheduler.mode=max").configure_optimizers()
    assert found["lr_scheduler"]["monitor"] == "val/auroc" and found["lr_scheduler"]["scheduler"].mode == "max"
    with pytest.raises(ConfigError, match="model.scheduler.monitor"):
        module("~model.scheduler.monitor").configure_optimizers()
    with pytest.raises(ConfigError, match=r"model.loss \(torch.nn.NoSuchLoss\) cannot be used"):
        module("model.loss._target_=torch.nn.NoSuchLoss")


def test_the_attention_heads_widths_come_from_config():
    head = AttentionGAPHead(channels=6, hidden=4, dropout=0.0, widths=(5, 3)).eval()
    convs = [layer for layer in head.attention if isinstance(layer, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(6, 5), (5, 3), (3, 1)]
    assert model_cfg("effb7_att")["net"]["attention"] == [64, 16, 8]
    with pytest.raises(ModelError, match="model.net.attention"):
        AttentionGAPHead(channels=6, hidden=4, dropout=0.0, widths=())


def test_a_cosine_schedule_from_an_experiment_yaml(tmp_path, folder_dataset, compose_cfg):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "cosine_cnn.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n"
        "  - override /model: cnn\n"
        "  - override /model/scheduler: cosine\n"
        "model:\n"
        "  lr: 0.02\n"
    )
    cfg = compose_cfg(f"hydra.searchpath=[file://{tmp_path}]", "experiment=cosine_cnn", f"data.root={folder_dataset}")
    assert cfg.model.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"
    train(compose_cfg(f"hydra.searchpath=[file://{tmp_path}]", "experiment=cosine_cnn",
                      f"data.root={folder_dataset}", "trainer.max_epochs=2", "test=false"))  # fmt: skip
    lrs = []
    for log in (tmp_path / "run").glob("logs/version_*/metrics.csv"):
        import csv

        with open(log) as fh:
            lrs += [float(r["lr-Adam"]) for r in csv.DictReader(fh) if r.get("lr-Adam")]
    assert lrs[0] == pytest.approx(0.02) and lrs[1] == pytest.approx(0.01)  # cos(pi/2): half way down


def test_the_name_of_a_run_is_the_backbone_it_trained(compose_cfg):
    cfg = compose_train("model=vgg16", "model.backbone=resnet50", return_hydra_config=True)
    assert cfg.model.name == "resnet50" and cfg.model.net.backbone == "resnet50"
    assert cfg.hydra.run.dir.startswith("runs/resnet50/")
    assert model_cfg("effb7_att", "model.backbone=mobilenetv2")["name"] == "mobilenetv2_att"
    assert model_cfg("effb7_att")["name"] == "effb7_att" and model_cfg("cnn_deep")["name"] == "cnn_deep"
