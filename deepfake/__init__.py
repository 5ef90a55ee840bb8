"""deepfake: tell real face images from manipulated or generated ones.

One image, from disk to a verdict, and the module that does each step:

    images        the file's header is read (format, size: too many pixels is refused before decoding),
                  then its pixels are decoded to RGB
    preprocess    the contract: resize to the model's square input, scale to [0, 1], normalise; labels
                  real = 0, fake = 1; the model outputs the logit of "fake"
    samples       training finds the images of a dataset (Real/ Fake/ folders, a Train/Validation/Test
                  tree or a CSV) and splits them
    data          and batches them through that same contract (settings, augmentation, data module)
    models        the networks, by name (cnn, hfnet, timm backbones, the attention head)
    training      Lightning fits one (train.py: configs/ composed by Hydra) and saves checkpoints that
                  carry their model config and the contract; training.checkpoint reads them back
    export        a checkpoint becomes an ONNX file with the contract in its metadata, checked against PyTorch
    predictor     the ONNX file and onnxruntime give p_fake and the verdict; no torch
    infer, web    the command line and the web app in front of the predictor

Around them: metrics (every score the project reports), evaluate and robustness (a model on a
dataset, clean and degraded), compare (runs side by side), explain (heatmaps), curves (training
curves), cli (one-line errors and exit codes for every command), errors (the errors a user can fix).
"""

from pathlib import Path

__version__ = "0.1.0"

_PACKAGE = Path(__file__).resolve().parent


def bundled_file(relative: str) -> Path:
    """A file shipped beside the code, named by its place in the repository ("models/default.onnx").

    A checkout (or an editable install) reads it from the repository; a wheel carries it inside the package,
    under deepfake/bundled/ (pyproject.toml maps models/ there).
    """
    installed = _PACKAGE / "bundled" / relative
    return installed if installed.exists() else _PACKAGE.parent / relative
