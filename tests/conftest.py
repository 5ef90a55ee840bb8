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
