"""MediaPipe's 468-point face mesh on face crops: the landmarks self-blended pseudo-fakes draw their masks from.

The model is MediaPipe's face landmark network (Apache-2.0), converted from its TFLite file to ONNX and shipped
beside this module (``models/face_landmark.onnx``, ``models/LICENSE.txt``). It replaced dlib's 68-point shape
predictor, whose iBUG 300-W training data allows non-commercial use only.

What the network expects, and why this module does what it does:

* Input: one face filling a 192 x 192 RGB image, NHWC float32 scaled to [0, 1] (MediaPipe's face landmark graph
  and its Python port convert pixels with the range (0, 1); the face *detector* beside it takes [-1, 1]).
  MediaPipe cuts that image from a square 1.5x the detector's box, turned upright by the eyes. The face stage's
  crop (a square ``margin`` times the face box, 1.3 by default) is close to that, so the whole crop is resized to
  192, stretched if it is not square: no box, no rotation. A tighter crop fits worse: on dfdc-mini's own crops,
  whose chin often touches the border, the mouth may be placed too high; re-cut by the face stage (margin 1.3)
  the points move less when the crop shifts by a few pixels (0.9% of the side against 1.4%, median).
* Output: 468 points (x, y, z) in pixels of the 192 input (z: depth, in the same units as x, smaller is nearer
  the camera), and a face-presence logit. The points are scaled back to the crop's pixels; a crop whose presence
  score is under :data:`PRESENCE_THRESHOLD` has no mesh (None): the network draws a mesh on anything, a wall
  included, and only this score says whether a face was there.

numpy, OpenCV and onnxruntime only, no torch: a leaf the torch-free side may import. One
``onnxruntime.InferenceSession`` per process and thread count, made on first use (:func:`load`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.errors import ImageError, ModelError

MODEL_PATH = Path(__file__).parent / "models" / "face_landmark.onnx"
INPUT_SIZE = 192
NUM_POINTS = 468
# sigmoid(presence logit) a crop needs for its mesh to count, MediaPipe's own cut. Faces score near 1 (faces-mini
# and dfdc-mini crops, and deepfake.faces.drawing's drawn face) and noise near 0, so the value is not delicate.
PRESENCE_THRESHOLD = 0.5
BATCH_SIZE = 32

# Named point sets of the mesh: MediaPipe's canonical lists (face_mesh_connections.py), each in the order its
# contour runs, so a set can be drawn as a polygon. LEFT and RIGHT are the person's own: LEFT_EYE is the one on
# the image's right in a frontal face.
FACE_OVAL = (
    *(10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377),
    *(152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109),
)  # the 36-point silhouette, clockwise in the image from the top of the forehead (10), chin at 152
LIPS = (
    *(61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),  # outer
    *(78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191),  # inner
)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115, 48, 64)
# The oval below the cheekbones, ear to ear through the chin: the analogue of dlib's jaw line points 3-13.
LOWER_OVAL = FACE_OVAL[FACE_OVAL.index(361) : FACE_OVAL.index(58) + 1]


@dataclass(frozen=True)
class Mesh:
    """The mesh of one crop: ``points`` float32 (468, 3) as (x, y, z) in the crop's pixels, and the presence
    score (a probability) it passed."""

    points: np.ndarray
    score: float

    @property
    def xy(self) -> np.ndarray:
        """The (468, 2) image positions."""
        return self.points[:, :2]


class FaceMesh:
    """One onnxruntime session of the face mesh model, on CPU."""

    def __init__(self, path: str | os.PathLike | None = None, threads: int = 1):
        """``path``: the model file, by default the one shipped beside this module (:data:`MODEL_PATH`)."""
        import onnxruntime as ort

        path = Path(path) if path is not None else MODEL_PATH
        if not path.is_file():
            raise ModelError(
                f"the face mesh model is missing: {path} (it ships with the package under deepfake/faces/models/; "
                "reinstall the package or restore the file from the repository)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about the converted graph are noise to a user
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types: a damaged or foreign file
            raise ModelError(f"the face mesh model {path} cannot be loaded (damaged file?): {exc}") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if (
            len(inputs) != 1
            or list(inputs[0].shape[1:]) != [INPUT_SIZE, INPUT_SIZE, 3]
            or len(outputs) != 2
            or outputs[0].shape[-1] != NUM_POINTS * 3
        ):
            raise ModelError(
                f"{path} is not the face mesh model: it needs one (batch, {INPUT_SIZE}, {INPUT_SIZE}, 3) input and "
                f"outputs of {NUM_POINTS * 3} coordinates and a presence logit"
            )
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in outputs]

    def run(self, crops: Sequence[np.ndarray], batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """The raw outputs for uint8 RGB crops, ``batch_size`` a model run: points (N, 468, 3) in pixels of the
        192 input, and presence probabilities (N,)."""
        for crop in crops:
            _check(crop)
        coords, scores = [np.zeros((0, NUM_POINTS, 3), np.float32)], [np.zeros(0)]
        for start in range(0, len(crops), max(1, batch_size)):
            batch = np.stack([_input(crop) for crop in crops[start : start + max(1, batch_size)]])
            points, logits = self.session.run(self.output_names, {self.input_name: batch})
            coords.append(points.reshape(len(batch), NUM_POINTS, 3))
            scores.append(1 / (1 + np.exp(-np.clip(logits.reshape(len(batch)), -60, 60).astype(np.float64))))
        return np.concatenate(coords), np.concatenate(scores)

    def __call__(self, crops: Sequence[np.ndarray], batch_size: int = BATCH_SIZE) -> list[Mesh | None]:
        """The mesh of each uint8 RGB crop (None where no face), ``batch_size`` crops a model run."""
        coords, scores = self.run(crops, batch_size)
        results: list[Mesh | None] = []
        for crop, points, score in zip(crops, coords, scores, strict=True):
            if score < PRESENCE_THRESHOLD:
                results.append(None)
                continue
            height, width = crop.shape[:2]
            scale = np.array([width, height, width], np.float32) / INPUT_SIZE  # z in x's units, as MediaPipe
            results.append(Mesh((points * scale).astype(np.float32), float(score)))
        return results


def presence(crops: Sequence[np.ndarray], threads: int = 1, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The face-presence probability of each uint8 RGB crop: how sure the mesh is that a face fills it."""
    return load(threads).run(crops, batch_size)[1]


def _check(crop: np.ndarray) -> None:
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        got = f"{getattr(crop, 'dtype', type(crop).__name__)} of shape {getattr(crop, 'shape', None)}"
        raise ImageError(f"a face crop must be uint8 RGB of shape (height, width, 3), got {got}")
    if min(crop.shape[:2]) < 1:
        raise ImageError(f"a face crop must not be empty, got shape {crop.shape}")


def _input(crop: np.ndarray) -> np.ndarray:
    height, width = crop.shape[:2]
    shrink = max(height, width) > INPUT_SIZE  # area averaging when shrinking: no aliasing of fine detail
    resized = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return resized.astype(np.float32) / 255.0


@functools.lru_cache(maxsize=8)
def _cached(threads: int, pid: int) -> FaceMesh:
    # The pid is part of the key so that a forked worker makes its own session instead of using its parent's copy.
    return FaceMesh(threads=threads)


def load(threads: int = 1) -> FaceMesh:
    """This process's session with ``threads`` intra-op threads, made on first use (a ModelError if the model
    file is missing or damaged)."""
    return _cached(max(1, int(threads)), os.getpid())


def face_mesh(crop_rgb: np.ndarray, threads: int = 1) -> Mesh | None:
    """The mesh of one uint8 RGB face crop (one face with some margin around it), or None when no face is there."""
    return load(threads)([crop_rgb])[0]


def face_meshes(crops: Sequence[np.ndarray], threads: int = 1, batch_size: int = BATCH_SIZE) -> list[Mesh | None]:
    """The mesh of each crop, in input order, ``batch_size`` crops a model run."""
    return load(threads)(crops, batch_size)
