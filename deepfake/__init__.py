"""deepfake: tell real face images from manipulated or generated ones.

How an image flows from disk to a verdict:
    preprocess (decode, RGB, resize, scale) -> data (layouts, splits, batches)
    -> models (detectors by name) -> training (Lightning fit/test, metrics.json)
"""

from pathlib import Path

__version__ = "0.1.0"

_PACKAGE = Path(__file__).resolve().parent


def bundled_file(relative: str) -> Path:
    """A file shipped beside the code, named by its place in the repository ("models/default.onnx").

    A checkout (or an editable install) reads it from the repository; a wheel carries it inside the package,
    under deepfake/bundled/ (pyproject.toml maps models/ and configs/ there).
    """
    installed = _PACKAGE / "bundled" / relative
    return installed if installed.exists() else _PACKAGE.parent / relative
