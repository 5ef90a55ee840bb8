"""Training end to end on generated images: run files, label order, resume, reproducibility, CLI errors."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, make_class_folders, make_image, make_undecodable_png, model_cfg
from helpers import data_config
from torch import nn

from deepfake.data.datamodule import DeepfakeDataModule
from deepfake.training.module import DeepfakeLitModule
from deepfake.training.train import train


def _epochs_trained(run_dir):
    epochs = set()
    for path in run_dir.glob("logs/version_*/metrics.csv"):
        with open(path) as fh:
            epochs |= {int(r["epoch"]) for r in csv.DictReader(fh) if r.get("train/loss")}
    return sorted(epochs)


def test_run_writes_metrics_split_config_and_checkpoints(folder_dataset, compose_cfg, tmp_path):
    run = tmp_path / "run"
    metrics = train(compose_cfg(f"data.root={folder_dataset}", "trainer.max_epochs=2"))
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("test/acc", "test/precision", "test/recall", "test/f1", "test/auroc"):
        assert 0.0 <= saved[key] <= 1.0 and saved[key] == metrics[key]
    assert (run / "config.yaml").read_text().count("root: " + str(folder_dataset)) == 1
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert saved["best_checkpoint"].startswith(str(run / "checkpoints" / "epoch"))
    with open(run / "split.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(r["label"] == ("1" if "/Fake/" in r["path"] else "0") for r in rows)
    (log,) = run.glob("logs/version_*/metrics.csv")
    with open(log) as fh:
        epoch_times = [float(r["time/epoch_s"]) for r in csv.DictReader(fh) if r.get("time/epoch_s")]
    assert len(epoch_times) == 2 and all(t > 0 for t in epoch_times)
    # The generated fakes are noisy, the reals smooth: two epochs must learn that.
    assert saved["test/auroc"] > 0.9


class AlwaysFake(nn.Module):
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def forward(self, x):
        return torch.full((x.shape[0],), 10.0)


def test_label_order_real0_fake1_from_folder_to_metrics(tmp_path):
    """A model that says "fake" to everything has recall 1 and precision = share of Fake/ images."""
    import lightning as L

    root = tmp_path / "d"
    for i in range(3):
        make_image(root / "Test" / "Real" / f"r{i}.png", 0, seed=i)
    for i in range(7):
        make_image(root / "Test" / "Fake" / f"f{i}.png", 1, seed=50 + i)
    for split in ("Train", "Validation"):
        make_class_folders(root / split, 2, 2)
    module = DeepfakeLitModule(model=model_cfg("cnn"), image_size=32)
    module.net = AlwaysFake()
    dm = DeepfakeDataModule(data_config(root, batch_size=4, num_workers=0), module.preprocess, seed=0)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    (metrics,) = trainer.test(module, datamodule=dm, verbose=False)
    assert metrics["test/recall"] == pytest.approx(1.0)
    assert metrics["test/precision"] == pytest.approx(0.7)
    assert metrics["test/acc"] == pytest.approx(0.7)


def test_resume_from_last_ckpt_continues_the_epoch_count(folder_dataset, compose_cfg, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    train(compose_cfg(f"data.root={folder_dataset}", "trainer.max_epochs=1", "test=false", run_dir=first))
    last = first / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0
    train(compose_cfg(f"data.root={folder_dataset}", "trainer.max_epochs=2", f"ckpt_path={last}", run_dir=second))
    assert _epochs_trained(first) == [0]
    assert _epochs_trained(second) == [1]  # epoch 0 is not trained again
    resumed = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * 4  # 32 train images / batch 8 per epoch
    # Resuming into the same run directory keeps the first run's log beside the new one.
    train(
        compose_cfg(
            f"data.root={folder_dataset}",
            "trainer.max_epochs=3",
            f"ckpt_path={second / 'checkpoints' / 'last.ckpt'}",
            run_dir=second,
        )
    )
    assert _epochs_trained(second) == [1, 2]


def test_runs_are_reproducible_on_cpu(folder_dataset, compose_cfg, tmp_path):
    weights = []
    for name in ("a", "b"):
        train(compose_cfg(f"data.root={folder_dataset}", "trainer.max_epochs=1", "test=false", run_dir=tmp_path / name))
        weights.append(torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_training_survives_an_image_that_fails_to_decode(folder_dataset, compose_cfg, tmp_path):
    make_undecodable_png(folder_dataset / "Fake" / "broken.png")
    (folder_dataset / "Real" / "empty.png").write_bytes(b"")
    (folder_dataset / "Real" / "header.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9")
    metrics = train(compose_cfg(f"data.root={folder_dataset}", "trainer.max_epochs=1"))
    # empty.png and header.jpg (no readable header): caught before training; broken.png: dropped from its batch
    assert metrics["skipped_files"] == 2
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.root=/no/such/dataset", "data.root=/no/such/dataset: no such file or directory"),
        ("data.image_size=4", "data.image_size of at least 10, got 4"),
        ("data.batch_size=0", "data.batch_size=0 must be a positive integer"),
        ("ckpt_path=/no/such.ckpt", "ckpt_path=/no/such.ckpt: no such checkpoint file"),
    ],
)
def test_cli_reports_bad_input_without_traceback(override, message, folder_dataset, tmp_path):
    args = [f"data.root={folder_dataset}", f"hydra.run.dir={tmp_path / 'run'}", override]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {message}" or message in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_mixup_blends_images_and_labels_alike(monkeypatch):
    module = DeepfakeLitModule(model=model_cfg("hfnet", "model.net.widths=[4]", "model.mixup=0.4"), image_size=16)
    seen = {}

    class Record(nn.Module):
        def forward(self, logits, target):
            seen["target"] = target
            return logits.mean()

    module.loss = Record()
    module.log = module.log_dict = lambda *a, **k: None
    monkeypatch.setattr(torch.distributions.Beta, "sample", lambda self: torch.tensor(0.25))
    monkeypatch.setattr(torch, "randperm", lambda n, device=None: torch.arange(n - 1, -1, -1))
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0.0, 0.0, 1.0, 1.0])
    seen_inputs = []
    module.net.register_forward_pre_hook(lambda mod, args: seen_inputs.append(args[0]))
    module.training_step((x, y, torch.zeros(4, dtype=torch.long)), 0)
    assert torch.allclose(seen["target"], torch.tensor([0.75, 0.75, 0.25, 0.25]))
    assert torch.allclose(seen_inputs[0], 0.25 * x + 0.75 * x.flip(0))
