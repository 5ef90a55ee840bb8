"""A regular (non-editable) install works away from the repository: the bundled model, the export defaults, the
page's templates and static files travel in the wheel, and the console scripts run.

The tests import the package from the checkout (editable install); this one installs the wheel into a folder of
its own and runs it from another directory, where nothing of the checkout can stand in for a missing file.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, make_image

from deepfake.predictor import Predictor

CHECK = """
import json, sys
from pathlib import Path
import deepfake
from deepfake.export import export_config
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
    "export_opset": export_config().opset,
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
def installed(tmp_path_factory) -> Path:
    """The wheel built from the tracked files (a copy: the build writes build/ beside the sources), installed
    without dependencies into a folder of its own; the test environment supplies the dependencies."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    site = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--target", str(site), str(source)],
        check=True,
        capture_output=True,
    )
    return site


def run_installed(site: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("DEEPFAKE_MODEL", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_package_finds_its_model_config_and_page(installed, tmp_path):
    image = make_image(tmp_path / "face.png", label=1, seed=3, size=96)
    done = run_installed(installed, tmp_path, sys.executable, "-c", CHECK, str(installed), str(image))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    # The copy in the wheel answered, not the checkout, and it is the same model.
    assert Path(found["package"]).is_relative_to(installed)
    assert Path(found["model"]) == installed / "deepfake" / "bundled" / "models" / "default.onnx"
    assert found["p_fake"] == pytest.approx(Predictor().predict(image).p_fake, abs=1e-7)
    assert found["export_opset"] >= 17
    assert found["page"] == [200, True]
    assert found["static"] == [200, 200]
    status, body = found["api"]
    assert status == 200 and body["results"][0]["p_fake"] == pytest.approx(found["p_fake"], abs=1e-6)


def test_console_scripts_run_from_the_wheel(installed, tmp_path):
    image = make_image(tmp_path / "face.png", label=0, seed=4, size=96)
    infer = run_installed(installed, tmp_path, str(installed / "bin" / "deepfake-infer"), "--json", str(image))
    assert infer.returncode == 0, infer.stderr
    line = json.loads(infer.stdout)
    assert line["file"] == str(image) and line["label"] in ("real", "fake")
    assert line["p_fake"] == pytest.approx(Predictor().predict(image).p_fake, abs=1e-6)
    for script in ("deepfake-evaluate", "deepfake-compare", "deepfake-serve"):
        shown = run_installed(installed, tmp_path, str(installed / "bin" / script), "--help")
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: {script}"), shown.stderr
