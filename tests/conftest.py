"""Shared fixtures: small generated image folders and config composition."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
FACES_MINI = ROOT.parent / "shared" / "datasets" / "faces-mini"


def make_image(path: Path, label: int, seed: int, size: int = 40) -> Path:
    """Real images are smooth gradients, fakes carry high-frequency noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([yy, xx, (yy + xx) / 2], axis=-1) * rng.uniform(120, 220) + rng.uniform(0, 30)
    if label == 1:
        base = base + rng.normal(0, 40, base.shape)
    bgr = np.clip(base, 0, 255).astype(np.uint8)[..., ::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", bgr)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def make_class_folders(root: Path, n_real: int, n_fake: int, names=("Real", "Fake"), suffix=".jpg", seed=0) -> Path:
    for label, (name, n) in enumerate(zip(names, (n_real, n_fake), strict=True)):
        for i in range(n):
            make_image(root / name / f"{name.lower()}_{i:03d}{suffix}", label, seed=seed * 10_000 + label * 1000 + i)
    return root


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    return make_class_folders(tmp_path / "data", 20, 20)


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """compose_cfg(*overrides) -> a train config writing into a fresh run directory."""

    def _compose(*overrides: str, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            return compose(
                "train",
                overrides=[
                    f"run_dir={run_dir}",
                    "trainer=cpu",
                    "data.num_workers=0",
                    "data.batch_size=8",
                    "data.image_size=32",
                    "callbacks.progress_bar=null",
                    *overrides,
                ],
            )

    return _compose


def export_cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("export", overrides=list(overrides))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A small hfnet trained on generated images (smooth real, noisy fake) until it tells them apart."""
    tmp = tmp_path_factory.mktemp("export")
    data = make_class_folders(tmp / "data", 20, 20)
    run = tmp / "run"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"run_dir={run}",
                f"data.root={data}",
                "trainer=cpu",
                "model=hfnet",
                "model.stem_stride=2",
                "model.widths=[8,16]",
                "model.depth=1",
                "model.lr=1e-2",
                "trainer.max_epochs=8",
                "callbacks.early_stopping=null",
                "data.num_workers=0",
                "data.batch_size=8",
                "data.image_size=32",
                "callbacks.progress_bar=null",
            ],
        )
    from deepfake.training import train

    train(cfg)
    return run, data


@pytest.fixture(scope="session")
def exported(trained_run):
    run, data = trained_run
    out = run.parent / "model.onnx"
    from deepfake.export import export

    report = export(export_cfg(f"ckpt={run}/checkpoints/last.ckpt", f"out={out}"))
    return out, report, run, data
