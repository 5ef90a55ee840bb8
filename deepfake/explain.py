"""Explanations: where in an image a detector finds its evidence of "fake", as a heatmap over the image.

    from deepfake.explain import explain_onnx, explain_checkpoint
    explain_onnx(Predictor("model.onnx"), "face.jpg", "occlusion").png()       # PNG bytes of the overlay
    explain_checkpoint("runs/hfnet/<run>", "face.jpg", "gradcam").heatmap     # float32 (H, W) in [0, 1]

Methods (Captum for the attributions):

- ``occlusion``: grey out one window at a time and measure how much p_fake drops. It needs
  only forward passes, so it runs an ONNX file through the Predictor (or a checkpoint).
- ``gradcam``: Grad-CAM on the last convolutional feature map (checkpoints: it needs gradients).
- ``ig``: Integrated Gradients from the baseline to the image (checkpoints).
- ``attention``: the attention-head models' own spatial mask (ONNX files exported with it, or checkpoints).

A model trained on faces is explained on the face that decides its verdict: the most fake one, which the
``max`` rule of the file (``aggregate_faces``) makes the image's p_fake (under ``mean``, the face that pulls
it up most). Every map explains the model's evidence for "fake", whatever the verdict, and is normalised to
[0, 1] per image: it shows *where* the evidence sits, not how much there is (p_fake says that).
This module imports numpy and OpenCV only; torch and Captum are imported when a method needs them,
so ``attention`` on an ONNX file stays torch-free.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from deepfake.contract import DEFAULT_FACE_RULE, deciding_face
from deepfake.errors import UserError
from deepfake.faces import face_crops
from deepfake.images import encode_image, to_rgb

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from torch import nn

    from deepfake.faces import FaceStage
    from deepfake.predictor import Predictor
    from deepfake.preprocess import Preprocess
    from deepfake.training.checkpoint import Checkpoint

METHODS = ("occlusion", "gradcam", "ig", "attention")
ONNX_METHODS = ("occlusion", "attention")

# How strongly the colour map covers the image: the face must stay recognisable under the heat.
OVERLAY_ALPHA = 0.45
# Occluded copies of the input built per Captum step, as a budget of float32 values (64 MB): Captum's
# per-step overhead dominates on small models, so the bundled 64 px model does all 225 windows in one step.
OCCLUSION_BATCH_VALUES = 1 << 24
IG_STEPS = 32
# IG is computed per pixel and a few pixels carry extreme values; scaling to the 99th percentile
# instead of the maximum keeps one hot pixel from washing the rest of the map out.
IG_OUTLIER_PERCENT = 1.0


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to one bool
class Explanation:
    method: str
    heatmap: np.ndarray  # float32 (H, W) in [0, 1], the input image's size
    overlay: np.ndarray  # uint8 (H, W, 3) RGB: the image with the heatmap blended on top
    p_fake: float  # the model's probability of "fake" for the image

    def png(self) -> bytes:
        """The overlay encoded as PNG."""
        return encode_image(self.overlay, ".png")


@functools.cache  # asked on every page and request of the web app; what is installed does not change meanwhile
def captum_installed() -> bool:
    """Occlusion runs Captum, which comes with the train extra; a base install explains with attention only."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "captum"))


def supported_methods(predictor: Predictor) -> tuple[str, ...]:
    """The methods :func:`explain_onnx` can run on this model file with what is installed."""
    return tuple(
        method
        for method, usable in (("occlusion", captum_installed()), ("attention", predictor.has_attention))
        if usable
    )


def check_onnx_method(predictor: Predictor, method: str) -> None:
    """Raise UserError, saying why and what works instead, when ``method`` cannot explain this model file."""
    _check_method(method)
    if method in supported_methods(predictor):
        return
    if method == "attention":
        raise UserError(_no_attention(f"model {predictor.model_name} ({predictor.path.name})"))
    if method == "occlusion":
        raise UserError(
            "occlusion needs torch and captum, which the base install leaves out: pip install 'deepfake[train]'"
        )
    raise UserError(
        f"explanation {method!r} follows gradients, which an ONNX file does not have: "
        "give the training checkpoint instead (infer.py --ckpt); ONNX models support "
        + ", ".join(supported_methods(predictor))
    )


def explain_onnx(predictor: Predictor, image, method: str = "occlusion") -> Explanation:
    """Explain an ONNX model's verdict on ``image`` (path, bytes, RGB uint8 array or PIL image)."""
    check_onnx_method(predictor, method)
    # A model trained on faces is explained on what decided its verdict: the crop of the face the file's rule picks.
    rgb = to_rgb(image)
    rgb = deciding_crop(rgb, predictor.face_stage, predictor.preprocess, predictor.p_fake, predictor.face_rule)
    x = predictor.model_input(rgb)[None]
    if method == "attention":
        p, mask = predictor.p_fake_with_attention(x)
        return make_explanation(method, rgb, mask[0], float(p[0]))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.from_numpy(predictor.p_fake(np.ascontiguousarray(batch.detach().cpu().numpy(), np.float32)))

    p = float(predictor.p_fake(x)[0])
    return make_explanation(method, rgb, _occlusion(forward, x), p)


def explain_checkpoint(checkpoint: Checkpoint | str, image, method: str) -> Explanation:
    """Explain a checkpoint's verdict (a Checkpoint from deepfake.training.checkpoint.load_checkpoint, a .ckpt or a run
    directory)."""
    import torch

    from deepfake.models import returns_attention
    from deepfake.training.checkpoint import load_checkpoint

    _check_method(method)
    if not hasattr(checkpoint, "net"):
        checkpoint = load_checkpoint(checkpoint)
    net = checkpoint.net.eval()
    if method == "attention" and not returns_attention(net):
        raise UserError(_no_attention(f"model {checkpoint.name}"))

    def p_fake(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(net(torch.from_numpy(batch))).numpy()

    # As in explain_onnx: the face that decides the verdict (a checkpoint is judged by the default rule, max).
    rgb = deciding_crop(to_rgb(image), checkpoint.faces, checkpoint.preprocess, p_fake)
    x = torch.from_numpy(checkpoint.preprocess(rgb)[None])
    with torch.no_grad():
        p = float(torch.sigmoid(net(x))[0])

    if method == "attention":
        with torch.no_grad():
            _, mask = net(x, return_mask=True)
        return make_explanation(method, rgb, mask[0, 0].numpy(), p)
    if method == "occlusion":

        def forward(batch):
            with torch.no_grad():
                return torch.sigmoid(net(batch))

        return make_explanation(method, rgb, _occlusion(forward, x.numpy()), p)
    if method == "gradcam":
        from captum.attr import LayerAttribution, LayerGradCam

        # The logit, not p_fake: the sigmoid's flat tails would starve confident verdicts of gradient.
        cam = LayerGradCam(net, feature_layer(net, x)).attribute(x, relu_attributions=True)
        cam = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return make_explanation(method, rgb, cam[0].sum(0).numpy(), p)
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(net).attribute(x, baselines=torch.zeros_like(x), n_steps=IG_STEPS, internal_batch_size=8)
    # Per-pixel IG signs flip between neighbours and channels (high-pass filters do that), so the
    # map shows |attribution|: how much each pixel moved the logit, in either direction.
    return make_explanation(method, rgb, attr[0].detach().abs().sum(0).numpy(), p, IG_OUTLIER_PERCENT)


def deciding_crop(
    rgb: np.ndarray,
    stage: FaceStage | None,
    preprocess: Preprocess,
    p_fake: Callable[[np.ndarray], np.ndarray],
    rule: str = DEFAULT_FACE_RULE,
) -> np.ndarray:
    """What an explanation shows: the crop of the face that decides the verdict on ``rgb`` under ``rule``
    (:func:`deepfake.contract.deciding_face`; ``p_fake`` maps prepared inputs to probabilities); the whole image
    when ``stage`` is None or finds no face, as the predictor then judges the whole image."""
    if stage is None:
        return rgb
    found = face_crops(rgb, stage)
    if len(found) <= 1:
        return found[0][1] if found else rgb
    p = p_fake(np.stack([preprocess(crop) for _, crop in found]))
    return found[deciding_face(p, rule)][1]


def _occlusion(forward, x: np.ndarray) -> np.ndarray:
    """Occlusion attributions (S, S) for one prepared input (1, 3, S, S); ``forward`` maps a batch to p_fake (N,)."""
    import torch
    from captum.attr import Occlusion

    size = min(x.shape[-2:])
    # An eighth of the input hides a feature (an eye, a mouth corner) at any input size;
    # half-window strides make every pixel the average of four windows, so the map is smooth.
    window = max(1, size // 8)
    stride = max(1, window // 2)
    windows = int(np.prod([-(-(n - window) // stride) + 1 for n in x.shape[-2:]]))
    attr = Occlusion(forward).attribute(
        torch.from_numpy(x),
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        # Zero in normalised space is the normalisation's mean colour (black for the plain [0, 1]
        # models): the input the first layer sees as "no signal", the same for every contract,
        # so a window is removed rather than replaced by some other content.
        baselines=0.0,
        perturbations_per_eval=max(1, min(windows, OCCLUSION_BATCH_VALUES // x[0].size)),
    )
    # Positive: windows whose removal lowers p_fake, i.e. evidence for "fake".
    return attr[0].sum(0).numpy()


def feature_layer(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """The module whose output is the network's last convolutional feature map, found by structure, not by name.

    timm backbones (and the attention models built on them) produce it in ``forward_features``: the
    module returning exactly that tensor is the layer. The project's CNNs keep it in ``features``.
    Anything else: the last module whose output is still a (B, C, h, w) map with h, w > 1.
    """
    import torch

    if hasattr(net, "features") and isinstance(net.features, torch.nn.Module):
        return net.features
    owner = next((m for m in net.modules() if callable(getattr(m, "forward_features", None))), None)
    seen: list[tuple[torch.nn.Module, object]] = []

    def record(module, _inputs, output):
        seen.append((module, output))

    modules = list((owner or net).modules())[1:]
    handles = [m.register_forward_hook(record) for m in modules]
    try:
        with torch.no_grad():
            result = owner.forward_features(x) if owner is not None else net(x)
    finally:
        for handle in handles:
            handle.remove()
    if owner is not None:
        # The last module to finish with that very tensor is the outermost one producing it.
        matches = [m for m, out in seen if out is result]
        if matches:
            return matches[-1]
    maps = [m for m, out in seen if isinstance(out, torch.Tensor) and out.dim() == 4 and min(out.shape[-2:]) > 1]
    if not maps:
        raise UserError(f"gradcam needs a convolutional feature map; {type(net).__name__} produces none")
    return maps[-1]


def make_explanation(
    method: str, rgb: np.ndarray, attribution: np.ndarray, p_fake: float, outlier_percent: float = 0.0
) -> Explanation:
    """Attribution map (h, w) at model resolution -> Explanation at the image's size."""
    heatmap = normalise(attribution, outlier_percent)
    height, width = rgb.shape[:2]
    if heatmap.shape != (height, width):
        heatmap = np.clip(cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return Explanation(method, heatmap.astype(np.float32), overlay(rgb, heatmap), float(p_fake))


def normalise(attribution: np.ndarray, outlier_percent: float = 0.0) -> np.ndarray:
    """Positive part scaled to [0, 1] by its maximum (or by a high percentile, clipping outliers)."""
    positive = np.clip(np.nan_to_num(np.asarray(attribution, np.float32)), 0.0, None)
    scale = float(positive.max())
    if outlier_percent > 0:
        scale = float(np.percentile(positive, 100.0 - outlier_percent)) or scale
    return positive / scale if scale > 0 else np.zeros_like(positive)


def overlay(rgb: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """Blend the JET colour map of ``heatmap`` (red = 1) onto uint8 RGB ``rgb`` of the same size."""
    colours = cv2.applyColorMap(np.round(heatmap * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)  # OpenCV colour maps come out BGR
    return cv2.addWeighted(rgb, 1.0 - OVERLAY_ALPHA, colours, OVERLAY_ALPHA, 0.0)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise UserError(f"explanation method {method!r} is not one of {', '.join(METHODS)}")


def _no_attention(model: str) -> str:
    return (
        f"{model} has no attention head, so it has no attention map; use occlusion "
        "(attention maps come from attention-head models such as model=effb7_att)"
    )
