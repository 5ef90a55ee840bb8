"""Shared fixtures: small generated image folders and config composition."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from deepfake.faces.drawing import draw_face, face_photo  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[1]
FACES_MINI = ROOT.parent / "shared" / "datasets" / "faces-mini"


# Every cache a test run writes goes to one temporary folder, never the user's ~/.cache: DEEPFAKE_CACHE (the face
# crops and landmarks of data.face_cache and data.landmark_cache), XDG_CACHE_HOME (pip, torch hub, Hugging Face,
# timm) and MPLCONFIGDIR (matplotlib's font cache). Set in os.environ before collection imports anything, so the
# subprocesses the tests start (train.py, gunicorn, pip) inherit it; removed and restored when the run ends.
CACHE_VARIABLES = ("DEEPFAKE_CACHE", "XDG_CACHE_HOME", "MPLCONFIGDIR")
_saved_environ: dict[str, str | None] = {}


def pytest_configure(config):
    cache = Path(tempfile.mkdtemp(prefix="deepfake-test-cache-"))
    config._deepfake_cache = cache
    for name in CACHE_VARIABLES:
        _saved_environ[name] = os.environ.get(name)
        os.environ[name] = str(cache / name.lower())


def pytest_unconfigure(config):
    for name, value in _saved_environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    cache = getattr(config, "_deepfake_cache", None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def isolated_caches(pytestconfig) -> Path:
    """The temporary folder every cache points at during the run (see pytest_configure)."""
    assert os.environ["DEEPFAKE_CACHE"].startswith(str(pytestconfig._deepfake_cache))
    return pytestconfig._deepfake_cache


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu skip where CUDA is not available; torch is imported only when such a test is collected."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in gpu:
        item.add_marker(skip)


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


def make_undecodable_png(path: Path) -> Path:
    """A PNG whose header and end are whole but whose pixel data is zeroed: only decoding finds it broken."""
    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    start = data.find(b"IDAT")
    length = int.from_bytes(data[start - 4 : start], "big")
    data[start + 4 : start + 4 + length] = bytes(length)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
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
        return compose_train(
            f"run_dir={run_dir or tmp_path / 'run'}",
            "trainer=cpu",
            "data.num_workers=0",
            "data.batch_size=8",
            "data.image_size=32",
            "callbacks.progress_bar=null",
            *overrides,
        )

    return _compose


def compose_train(*overrides: str, return_hydra_config: bool = False):
    """The config train.py composes from its command line."""
    from deepfake.training.config import store_config

    store_config()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)


def export_cfg(*overrides):
    """The config export.py composes from its command line."""
    from deepfake.export import store_config

    store_config()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("export", overrides=list(overrides))


def model_cfg(name: str, *overrides: str) -> dict:
    """configs/model/<name>.yaml as train.py composes it (resolved), with overrides such as "model.net.dropout=0"."""
    from omegaconf import OmegaConf

    cfg = compose_train(f"model={name}", "data.root=unused", *overrides)
    return OmegaConf.to_container(cfg.model, resolve=True)


def make_net(name: str, *overrides: str, image_size: int = 32):
    """The network of configs/model/<name>.yaml, from scratch."""
    from deepfake.models import create_model

    return create_model(**model_cfg(name, *overrides)["net"], image_size=image_size)


# A tiny hfnet on CPU that learns the generated images of make_image in a few epochs, in seconds.
TINY_HFNET = (
    "trainer=cpu",
    "model=hfnet",
    "model.net.stem_stride=2",
    "model.net.widths=[8,16]",
    "model.net.depth=1",
    "model.lr=1e-2",
    "callbacks.early_stopping=null",
    "data.num_workers=0",
    "data.batch_size=8",
    "data.image_size=32",
    "callbacks.progress_bar=null",
)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A small hfnet trained on generated images (smooth real, noisy fake) until it tells them apart."""
    tmp = tmp_path_factory.mktemp("export")
    data = make_class_folders(tmp / "data", 20, 20)
    run = tmp / "run"
    cfg = compose_train(
        f"run_dir={run}",
        f"data.root={data}",
        *TINY_HFNET,
        "trainer.max_epochs=8",
    )
    from deepfake.training.train import train

    train(cfg)
    return run, data


@pytest.fixture(scope="session")
def exported(trained_run):
    run, data = trained_run
    out = run.parent / "model.onnx"
    from deepfake.export import export

    report = export(ckpt=f"{run}/checkpoints/last.ckpt", out=str(out))
    return out, report, run, data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(tmp_path: Path, bin_dir: Path | None = None, **env) -> tuple[subprocess.Popen, str]:
    """deepfake-serve (gunicorn) as `make serve` runs it, on a free loopback port; waits until /healthz answers.
    ``bin_dir``: the environment whose deepfake-serve runs (default: this one)."""
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed with the process
    command = (bin_dir or Path(sys.executable).parent) / "deepfake-serve"
    serve = [str(command), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [*serve, "--workers", "1", "--threads", "2"], cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {(tmp_path / 'gunicorn.log').read_text()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise AssertionError(f"gunicorn did not answer: {(tmp_path / 'gunicorn.log').read_text()}")


@pytest.fixture(scope="session")
def faces_model(tmp_path_factory) -> Path:
    """A model file whose contract includes the face stage: the bundled one when it records a stage, else a copy
    of it with the default stage's metadata added (same weights)."""
    import onnx

    from deepfake.contract import face_metadata
    from deepfake.faces import FaceStage
    from deepfake.predictor import DEFAULT_MODEL

    model = onnx.load(DEFAULT_MODEL)
    if any(p.key == "face_detector" for p in model.metadata_props):
        return Path(DEFAULT_MODEL)
    for key, value in face_metadata(FaceStage()).items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path_factory.mktemp("faces_model") / "faces.onnx"
    onnx.save(model, path)
    return path


def face_video(path: Path, n: int = 20, fps: float = 10, blank=()) -> Path:
    """An MP4 of a drawn face moving right; frames whose index is in ``blank`` have no face."""
    from deepfake.video import write_video

    frames = []
    for t in range(n):
        frame = face_photo([(20 + 4 * t, 20, 200)], shape=(240, 320), seed=t % 3)
        frames.append(np.full_like(frame, 100) if t in blank else frame)
    return write_video(path, frames, fps)
