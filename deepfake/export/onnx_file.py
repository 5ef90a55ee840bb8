"""Writing the ONNX file: the network with its temperature and sigmoid built in, the contract in its metadata."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnx
import torch
from torch import nn

from deepfake.contract import (
    ATTENTION_NAME,
    INPUT_NAME,
    LOGIT_NAME,
    OUTPUT_NAME,
    attention_metadata,
    metadata_of,
    set_metadata,
)
from deepfake.errors import ConfigError
from deepfake.export.options import MIN_OPSET
from deepfake.models import returns_attention
from deepfake.preprocess import Preprocess


class WithProbability(nn.Module):
    """Adds p_fake = sigmoid(logit / temperature) to the graph, so apps need no post-processing; and the attention
    mask, if any. The logit output is the network's own, unscaled: the file's ``temperature`` relates the two."""

    def __init__(self, net: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.net = net
        self.attention = returns_attention(net)
        self.temperature = float(temperature)

    def probability(self, logit):
        # T = 1 adds no node, so an uncalibrated export is the same graph as before calibration existed.
        return torch.sigmoid(logit if self.temperature == 1.0 else logit / self.temperature)

    def forward(self, image):
        if self.attention:
            logit, mask = self.net(image, return_mask=True)
            return self.probability(logit), logit, mask
        logit = self.net(image)
        return self.probability(logit), logit


class Scaled(nn.Module):
    """The network's logit divided by ``temperature``: PyTorch's side of the parity check of a calibrated file."""

    def __init__(self, net: nn.Module, temperature: float):
        super().__init__()
        self.net, self.temperature = net, float(temperature)

    def forward(self, image):
        return self.net(image) / self.temperature


def write_onnx(
    net: nn.Module,
    preprocess: Preprocess,
    out: Path,
    metadata: dict[str, str],
    opset: int,
    temperature: float = 1.0,
) -> None:
    """Export with a dynamic batch axis (p_fake = sigmoid(logit / temperature)), attach metadata, run onnx.checker."""
    if opset < MIN_OPSET:
        raise ConfigError(f"opset={opset}: ONNX opset {MIN_OPSET} or later is required")
    for name in ("onnxscript", "onnx_ir"):  # their INFO lines narrate graph passes, not results
        logging.getLogger(name).setLevel(logging.WARNING)
    size = preprocess.image_size
    example = torch.rand(2, 3, size, size)
    wrapped = WithProbability(net, temperature).eval()
    outputs = [OUTPUT_NAME, LOGIT_NAME]
    if wrapped.attention:
        # A third output, so explanations of an ONNX-only model can show where the head looked.
        outputs.append(ATTENTION_NAME)
        metadata = attention_metadata(metadata)
    with torch.no_grad():
        program = torch.onnx.export(
            wrapped,
            (example,),
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    set_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)


def update_metadata(path: Path, updates: dict[str, str]) -> None:
    """Set (or add) metadata keys of an ONNX file in place; the graph is untouched."""
    model = onnx.load(path)
    set_metadata(model, metadata_of(model) | updates)
    onnx.save(model, path)


def replace_file(tmp: Path, out: Path) -> None:
    """Move a finished file into place: a reader never sees it half written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
