"""Every entry script answers a user error with one line on stderr and exit code 2, never a traceback."""

import subprocess
import sys

import pytest
from conftest import ROOT

# Each case starts an entry script in a fresh interpreter (torch, Lightning and Hydra imports): ~6 s apiece.
pytestmark = pytest.mark.slow


def run(script: str, *args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / script), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("train.py", [], "error: data.root needs a value: add data.root=... to the command line"),
        ("train.py", ["data.root=x", "model=nope"], "error: In 'train': Could not find 'model/nope' (options: cnn,"),
        ("train.py", ["data.root=x", "data.rooot=y"], "error: Could not override 'data.rooot'."),
        ("train.py", ["-m", "data.root=x", "model=cnn,nope"], "Could not find 'model/nope'"),
        ("train.py", ["data.root=x", "model/scheduler=sometimes"], "Could not find 'model/scheduler/sometimes'"),
        ("train.py", ["data.root=x", "data.image_size=big"], "data.image_size=big Value 'big' of type 'str' could"),
        ("train.py", ["data.root=x", "trainer.max_epochs=many"], "trainer.max_epochs=many Value 'many'"),
        ("train.py", ["data.root=x", "+model.dropout=0.3"], "model.dropout is not a model setting"),
        ("export.py", [], "error: ckpt needs a value: add ckpt=... to the command line"),
        ("export.py", ["ckpt=/no/such.ckpt"], "error: ckpt=/no/such.ckpt: no such checkpoint file"),
        ("export.py", ["ckpt=x", "opset=soon"], "error: Error merging override opset=soon"),
        ("export.py", ["ckpt=x", "fp32=true"], "error: Could not override 'fp32'."),
        ("infer.py", ["--threshold", "2", "x.jpg"], "--threshold=2 must be strictly between 0 and 1"),
        ("infer.py", ["--onnx", "/no/such.onnx", "x.jpg"], "error: model file /no/such.onnx: no such file"),
        ("evaluate.py", ["--data", "x"], "the following arguments are required: --out"),
        ("evaluate.py", ["--data", "/no/such", "--out", "/tmp/x"], "error: --data /no/such: no such file"),
        ("compare.py", ["/no/such/runs"], "error: /no/such/runs: no such directory"),
        ("compare.py", ["x", "--threads", "0"], "0 must be a whole number of at least 1"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(script, args, message, tmp_path):
    done = run(script, *args, cwd=tmp_path)  # a run directory Hydra makes before the error lands here, not in runs/
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert done.returncode == 2, done.stderr
    assert message in last, done.stderr
    assert "Traceback" not in done.stderr
    # Hydra's own reports span several lines; ours are one (lines before it are logging, not the error).
    assert sum(line.startswith("error:") or ": error:" in line for line in done.stderr.splitlines()) == 1


def test_help_still_works_for_the_hydra_commands():
    for script in ("train.py", "export.py"):
        done = run(script, "--help")
        assert done.returncode == 0 and "Config" in done.stdout, done.stderr
    assert "tolerance" in run("export.py", "--help").stdout  # the fields of ExportOptions
