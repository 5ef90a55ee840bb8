"""What a pip install gives, away from the repository.

- The full package (installed without dependencies into a folder of its own; the test environment supplies
  them) finds the bundled model, the page's templates and static files, and its console scripts run.
- A base install (a fresh virtual environment, ``pip install deepfake`` without extras) has no torch, yet
  ``deepfake-infer`` judges an image and the web app serves; commands that need the train extra say so.

The tests import the package from the checkout (editable install); these build the wheel from the tracked files
and run it from another directory, where nothing of the checkout can stand in for a missing file.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, make_image, start_gunicorn

from deepfake.predictor import Predictor

# Every test builds the wheel and runs it in subprocesses; the base install also reaches the package index.
pytestmark = pytest.mark.slow

CHECK = """
import json, sys
from pathlib import Path
import deepfake
from deepfake.predictor import Predictor
from deepfake.web import create_app

site, image = Path(sys.argv[1]).resolve(), sys.argv[2]
client = create_app({"TESTING": True}).test_client()
with open(image, "rb") as f:
    api = client.post("/api/v1/predict", data={"file": (f, "face.png")}, content_type="multipart/form-data")
print(json.dumps({
    "package": deepfake.__file__,
    "model": str(Predictor().path),
    "p_fake": Predictor().predict(image).p_fake,
    "page": [client.get("/").status_code, "<form" in client.get("/").get_data(as_text=True)],
    "static": [client.get("/static/app.js").status_code, client.get("/static/style.css").status_code],
    "api": [api.status_code, api.get_json()],
}))
"""


def tracked_files() -> list[str]:
    if not shutil.which("git") or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files a release contains")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from the tracked files (a copy: the build writes build/ beside the sources)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp), source],
        check=True,
        capture_output=True,
    )
    (built,) = tmp.glob("deepfake-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed without dependencies into a folder of its own; this environment supplies them."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    return site


def run_installed(site: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("DEEPFAKE_MODEL", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_package_finds_its_model_and_page(installed, tmp_path):
    image = make_image(tmp_path / "face.png", label=1, seed=3, size=96)
    done = run_installed(installed, tmp_path, sys.executable, "-c", CHECK, str(installed), str(image))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    # The copy in the wheel answered, not the checkout, and it is the same model.
    assert Path(found["package"]).is_relative_to(installed)
    assert Path(found["model"]) == installed / "deepfake" / "bundled" / "models" / "default.onnx"
    assert found["p_fake"] == pytest.approx(Predictor().predict(image).p_fake, abs=1e-7)
    assert found["page"] == [200, True]
    assert found["static"] == [200, 200]
    status, body = found["api"]
    assert status == 200 and body["results"][0]["p_fake"] == pytest.approx(found["p_fake"], abs=1e-6)


def test_export_runs_from_python_without_hydra_configs(installed, trained_run, tmp_path):
    """export(ckpt=..., out=...) needs no yaml: the wheel ships none, and the checkout is not on the path."""
    run, _ = trained_run
    code = (
        "import sys; from deepfake.export import describe_export, export\n"
        "print(describe_export(export(ckpt=sys.argv[1], out=sys.argv[2])))"
    )
    done = run_installed(installed, tmp_path, sys.executable, "-c", code, str(run), str(tmp_path / "m.onnx"))
    assert done.returncode == 0, done.stderr
    assert "parity: max |delta p_fake|" in done.stdout and (tmp_path / "m.onnx").is_file()
    # The wheel's only config is evaluate's perturbation set: none of train.py's or export.py's Hydra yaml.
    shipped = installed / "deepfake" / "bundled" / "configs"
    assert sorted(p.name for p in shipped.rglob("*") if p.is_file()) == ["robustness.yaml"]


def test_console_scripts_run_from_the_wheel(installed, tmp_path):
    image = make_image(tmp_path / "face.png", label=0, seed=4, size=96)
    infer = run_installed(installed, tmp_path, str(installed / "bin" / "deepfake-infer"), "--json", str(image))
    assert infer.returncode == 0, infer.stderr
    line = json.loads(infer.stdout)
    assert line["file"] == str(image) and line["label"] in ("real", "fake")
    assert line["p_fake"] == pytest.approx(Predictor().predict(image).p_fake, abs=1e-6)
    for script in ("deepfake-evaluate", "deepfake-compare", "deepfake-report", "deepfake-serve"):
        shown = run_installed(installed, tmp_path, str(installed / "bin" / script), "--help")
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: {script}"), shown.stderr


@pytest.fixture(scope="module")
def base_install(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel and its base dependencies from the package index: no extras."""
    venv = tmp_path_factory.mktemp("base") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    done = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return venv / "bin"


@pytest.mark.network
def test_a_base_install_has_no_torch_yet_judges_images_and_serves(base_install, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEEPFAKE_MODEL")}
    python = str(base_install / "python")
    absent = ("torch", "lightning", "torchvision", "timm", "hydra", "captum", "matplotlib", "onnx")
    probe = f"import importlib.util as u; print([m for m in {absent!r} if u.find_spec(m)])"
    found = subprocess.run([python, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"

    image = make_image(tmp_path / "face.png", label=1, seed=5, size=96)
    infer = subprocess.run(
        [base_install / "deepfake-infer", "--json", image], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert infer.returncode == 0, infer.stderr
    assert json.loads(infer.stdout)["p_fake"] == pytest.approx(Predictor().predict(image).p_fake, abs=1e-6)

    # A command of the train extra answers with the pip command, in one line.
    evaluate = subprocess.run(
        [base_install / "deepfake-evaluate", "--data", tmp_path, "--out", tmp_path / "eval"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert evaluate.returncode == 2 and evaluate.stderr.count("\n") == 1, evaluate.stderr
    assert "needs the Python package" in evaluate.stderr and "pip install 'deepfake[train]'" in evaluate.stderr

    process, url = start_gunicorn(tmp_path, bin_dir=base_install, **{"PATH": f"{base_install}:{env['PATH']}"})
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=10) as response:
            ready = json.load(response)
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            page = response.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert ready == {"status": "ready", "model": "hfnet"}
    # Without Captum the page offers no occlusion heatmap: nothing it cannot deliver.
    assert "<form" in page and 'name="heatmap"' not in page
