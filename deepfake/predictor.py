"""Run an exported detector with onnxruntime: no torch, nothing hard-coded.

    from deepfake.predictor import Predictor
    verdict = Predictor("model.onnx").predict("face.jpg")   # Prediction(label='fake', p_fake=0.97, ...)

Every preprocessing value (face stage, input size, colour order, scaling, mean/std,
labels, threshold, aggregation) comes from the model file's metadata (:mod:`deepfake.contract`),
written by export.py from the same :class:`~deepfake.preprocess.Preprocess` and
:class:`~deepfake.faces.FaceStage` that training used. p_fake is the file's own ``p_fake``
output, which export.py calibrates inside the graph (sigmoid(logit / temperature), the
``temperature`` key), so it is never scaled again here. A model trained on faces finds every
face in an image and judges each; the file's ``aggregate_faces`` rule makes the image's p_fake
from theirs (``max``, files without the key included: as fake as its most fake face), and its
``aggregate_frames`` rule a video's from its frames' (``mean`` by default). This module imports
numpy, OpenCV, dlib and onnxruntime only, so other apps can embed it without torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import onnxruntime as ort

from deepfake import bundled_file
from deepfake.contract import aggregate_faces, aggregate_frames, metadata_of, parse_contract, verdict_band
from deepfake.errors import ModelError, UserError
from deepfake.faces import Face, FaceStage, face_crops, warm_up
from deepfake.images import MAX_PIXELS, to_rgb
from deepfake.preprocess import LABELS, POSITIVE_CLASS, Preprocess, check_threshold
from deepfake.video import DEFAULT_FRAMES, MAX_DURATION_S, sample_frames

# The bundled model; DEEPFAKE_MODEL points elsewhere without code changes.
DEFAULT_MODEL = bundled_file("models/default.onnx")


def default_model_path() -> Path:
    return Path(os.environ.get("DEEPFAKE_MODEL") or DEFAULT_MODEL)


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu can use it, else CPU."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


# How callers name the ``faces`` argument (infer.py --faces, the API's ?faces=): auto follows the model file.
FACES_OPTIONS = {"auto": None, "on": True, "off": False}

NO_FACE_NOTE = (
    "no face was found, so the whole image was judged; the model was trained on faces, so this verdict is unreliable"
)
NO_FACE_VIDEO_NOTE = (
    "no face was found in any sampled frame, so whole frames were judged; the model was trained on faces, "
    "so this verdict is unreliable"
)


@dataclass(frozen=True)
class FaceVerdict:
    box: list[int]  # [x, y, width, height] in pixels of the image judged
    p_fake: float
    label: str
    confidence: float
    verdict: str = ""  # likely_real, uncertain or likely_fake: the file's two thresholds (contract.verdict_band)

    def to_dict(self) -> dict:
        return {
            "box": list(self.box),
            "p_fake": self.p_fake,
            "label": self.label,
            "confidence": self.confidence,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Prediction:
    label: str  # "real" or "fake"
    p_fake: float  # probability of "fake": with faces, theirs combined by the file's rule (max: the most fake face)
    confidence: float  # probability of the predicted label
    faces: tuple[FaceVerdict, ...] = ()  # every face found, largest first
    face_found: bool | None = None  # None: the face stage was off (a whole-image model, or faces=False)
    note: str | None = None  # why the verdict deserves less trust, when it does
    # What a person reads: likely_fake at or above the threshold, likely_real below the file's lower threshold,
    # uncertain between them. label and confidence (the two-way reading at the threshold) stay for scripts.
    verdict: str = ""

    def to_dict(self) -> dict:
        # Prediction's own fields only: a VideoPrediction adds its frames itself, and never its pixels.
        return {f.name: getattr(self, f.name) for f in fields(Prediction)} | {
            "faces": [face.to_dict() for face in self.faces]
        }


@dataclass(frozen=True)
class FramePrediction:
    index: int
    time_s: float
    p_fake: float | None  # the frame's faces combined by the file's rule (max: the most fake); None: no face here
    faces: tuple[FaceVerdict, ...] = ()

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "time_s": round(self.time_s, 3),
            "p_fake": self.p_fake,
            "faces": [face.to_dict() for face in self.faces],
        }


@dataclass(frozen=True)
class VideoPrediction(Prediction):
    """A video's verdict: p_fake combines, by the file's ``aggregate_frames`` rule (mean by default), the sampled
    frames that have a face (every frame without the stage)."""

    frames: tuple[FramePrediction, ...] = ()
    best_index: int | None = None  # the sampled frame that scored highest (one with a face, if any has)
    best_frame: np.ndarray | None = None  # its pixels (RGB), when asked for

    def to_dict(self) -> dict:
        return super().to_dict() | {"frames": [frame.to_dict() for frame in self.frames], "best_index": self.best_index}


def prepare(rgb: np.ndarray, preprocess: Preprocess, stage: FaceStage | None) -> tuple[list[Face] | None, np.ndarray]:
    """The faces ``stage`` finds in uint8 RGB ``rgb`` and a model input per face (k, 3, S, S); with no face found,
    ``[]`` and the whole image as one input; with no stage, ``None`` and the whole image. What the predictor
    judges, and what export calibrates and picks a threshold on."""
    found = face_crops(rgb, stage) if stage is not None else None
    if not found:
        return found, preprocess(rgb)[None]
    return [face for face, _ in found], np.stack([preprocess(crop) for _, crop in found])


def verdict(
    p_fake: float,
    threshold: float,
    labels=LABELS,
    positive: str = POSITIVE_CLASS,
    threshold_low: float | None = None,
) -> Prediction:
    """The label ``p_fake`` reads as (the positive class at or above ``threshold``), its confidence, and the
    verdict band (below ``threshold_low``: likely real; None: no uncertain band)."""
    p = float(p_fake)
    negative = next(label for label in labels if label != positive)
    fake = p >= threshold
    band = verdict_band(p, threshold, threshold_low)
    return Prediction(positive if fake else negative, p, p if fake else 1.0 - p, verdict=band)


class Predictor:
    """A loaded model file. Safe to share between threads: onnxruntime sessions are, and nothing else mutates.

    ``faces``: None follows the model file (its face stage, if it records one); False judges whole images,
    for images that are already face crops; True finds faces even for a model that records no stage
    (with the default :class:`FaceStage`).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        threshold: float | None = None,
        providers: Sequence[str] | None = None,
        threads: int = 0,
        faces: bool | None = None,
    ):
        self.path = Path(path) if path else default_model_path()
        if not self.path.is_file():
            hint = " (the bundled model is missing: pass a model file from export.py)" if path is None else ""
            raise ModelError(f"model file {self.path}: no such file{hint}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime picks (one per physical core)
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or default_providers())
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"model file {self.path} cannot be loaded by onnxruntime: {reason}") from exc
        self.metadata = metadata_of(self.session)
        self.contract = contract = parse_contract(self.metadata)
        self.preprocess = contract.preprocess
        self.labels = contract.labels
        self.positive_class = contract.positive_class
        self.input_name, self.output_name = contract.input_name, contract.output_name
        self.threshold = contract.threshold if threshold is None else check_threshold(threshold)
        # Below it: likely real. A file without one (before the band) has no uncertain band; a threshold given here
        # below the file's lower one moves it down too.
        low = contract.threshold_low
        self.threshold_low = self.threshold if low is None else min(low, self.threshold)
        # Already applied inside the graph (its p_fake output is sigmoid(logit / T)): informative, never reapplied.
        self.temperature = contract.temperature
        # How the faces of an image, and the frames of a video, make one p_fake.
        self.face_rule, self.frame_rule = contract.aggregate_faces, contract.aggregate_frames
        self.model_name = contract.model_name or self.path.stem
        self.model_face_stage = self.face_stage = contract.faces  # stage() starts from the model's
        self.face_stage = self.stage(faces)
        if self.face_stage is not None:
            warm_up(1, self.face_stage)
        self.attention_name = contract.attention_name
        if self.attention_name and self.attention_name not in {o.name for o in self.session.get_outputs()}:
            raise ModelError(
                f"model file {self.path}: its metadata names an attention output {self.attention_name!r} "
                "that the graph lacks; re-export it with export.py"
            )

    def __repr__(self) -> str:
        return f"Predictor({str(self.path)!r}, model={self.model_name!r}, threshold={self.threshold})"

    def model_input(self, image) -> np.ndarray:
        """One image (path, bytes, RGB array or PIL image), whole -> float32 (3, S, S), preprocessed as the file
        says. :meth:`inputs` applies the face stage first."""
        return self.preprocess(to_rgb(image))

    def stage(self, faces: bool | None = None) -> FaceStage | None:
        """The face stage a call uses: the predictor's, unless ``faces`` turns it off (False) or on (True)."""
        if faces is None:
            return self.face_stage
        return (self.face_stage or self.model_face_stage or FaceStage()) if faces else None

    def inputs(self, image, faces: bool | None = None) -> tuple[list[Face] | None, np.ndarray]:
        """The faces found in one image and a model input per face (k, 3, S, S); with no face found, ``[]`` and
        the whole image as one input; with the stage off, ``None`` and the whole image."""
        return prepare(to_rgb(image), self.preprocess, self.stage(faces))

    def judge(self, found: list[Face] | None, p: np.ndarray) -> Prediction:
        """The verdict on one image from its faces (see :meth:`inputs`) and their probabilities."""
        if found is None:
            return self.verdict(p[0])
        if not found:
            whole = self.verdict(p[0])
            return Prediction(whole.label, whole.p_fake, whole.confidence, (), False, NO_FACE_NOTE, whole.verdict)
        faces = tuple(self._face_verdict(face, q) for face, q in zip(found, p, strict=True))
        image = self.verdict(aggregate_faces(p, self.face_rule))
        return Prediction(image.label, image.p_fake, image.confidence, faces, True, verdict=image.verdict)

    def _face_verdict(self, face: Face, p: float) -> FaceVerdict:
        v = self.verdict(p)
        return FaceVerdict(face.box, v.p_fake, v.label, v.confidence, v.verdict)

    def _run(self, outputs: list[str], batch: np.ndarray, batch_size: int) -> list[np.ndarray]:
        chunks = [
            self.session.run(outputs, {self.input_name: batch[i : i + batch_size]})
            for i in range(0, len(batch), batch_size)
        ]
        return [np.concatenate([chunk[k] for chunk in chunks]) for k in range(len(outputs))]

    def p_fake(self, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities of the positive class for prepared inputs (N, 3, S, S), run ``batch_size`` at a time."""
        return self._run([self.output_name], batch, batch_size)[0].reshape(-1)

    @property
    def has_attention(self) -> bool:
        """Whether the file has an attention-head model's mask as an output (export.py adds it)."""
        return self.attention_name is not None

    def p_fake_with_attention(self, batch: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """p_fake (N,) and the attention masks (N, h, w) in [0, 1] at feature resolution, in one run."""
        if not self.has_attention:
            raise UserError(f"model {self.model_name} ({self.path.name}) has no attention output")
        p, mask = self._run([self.output_name, self.attention_name], batch, batch_size)
        return p.reshape(-1), mask.reshape(len(batch), *mask.shape[-2:])

    def verdict(self, p: float) -> Prediction:
        return verdict(p, self.threshold, self.labels, self.positive_class, self.threshold_low)

    def predict(self, image, faces: bool | None = None) -> Prediction:
        """The verdict on one image (path, bytes, RGB array or PIL image); ``faces`` as in :meth:`stage`."""
        found, x = self.inputs(image, faces)
        return self.judge(found, self.p_fake(x))

    def predict_batch(self, images: Iterable, batch_size: int = 64, faces: bool | None = None) -> list[Prediction]:
        """Predictions in input order. Raises ImageError on the first image that cannot be used."""
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size} must be at least 1")
        return self.judge_all([self.inputs(image, faces) for image in images], batch_size)

    def judge_all(
        self, prepared: Sequence[tuple[list[Face] | None, np.ndarray]], batch_size: int = 64
    ) -> list[Prediction]:
        """Verdicts for many images' :meth:`inputs`, their faces run through the model together."""
        if not prepared:
            return []
        p = self.p_fake(np.concatenate([x for _, x in prepared]), batch_size)
        ends = np.cumsum([len(x) for _, x in prepared])
        return [self.judge(found, p[end - len(x) : end]) for (found, x), end in zip(prepared, ends, strict=True)]

    def predict_video(
        self,
        path: str | os.PathLike,
        frames: int = DEFAULT_FRAMES,
        *,
        faces: bool | None = None,
        max_pixels: int | None = MAX_PIXELS,
        max_duration_s: float | None = MAX_DURATION_S,
        keep_best_frame: bool = False,
    ) -> VideoPrediction:
        """Judge ``frames`` evenly spaced frames of a video file, one frame in memory at a time.

        A frame scores its faces combined by the file's face rule (max: the most fake); the video, the frames with
        a face combined by its frame rule (mean by default). When no sampled frame has one (or the stage is off),
        whole frames are judged and combined by the frame rule.
        """
        judged: list[tuple[FramePrediction, float]] = []  # and the whole frame's p, used only when no face is found
        best_frame, best_index, best_key = None, None, (False, -1.0)
        for frame in sample_frames(path, frames, max_pixels=max_pixels, max_duration_s=max_duration_s):
            found, x = self.inputs(frame.rgb, faces)
            p = self.p_fake(x)
            one = self.judge(found, p)
            score = one.p_fake if one.face_found is not False else None
            judged.append((FramePrediction(frame.index, frame.time_s, score, one.faces), one.p_fake))
            key = (score is not None, one.p_fake)  # a frame with a face before any without
            if key > best_key:
                best_index, best_key = frame.index, key
                best_frame = frame.rgb if keep_best_frame else None
        with_face = [f.p_fake for f, _ in judged if f.p_fake is not None]
        stage_on = self.stage(faces) is not None
        if with_face:
            p_video, face_found, note = aggregate_frames(with_face, self.frame_rule), (True if stage_on else None), None
        else:  # stage on, but no face in any frame: whole frames, flagged
            whole_frames = [whole for _, whole in judged]
            p_video, face_found, note = aggregate_frames(whole_frames, self.frame_rule), False, NO_FACE_VIDEO_NOTE
            judged = [(FramePrediction(f.index, f.time_s, whole, ()), whole) for f, whole in judged]
        v = self.verdict(p_video)
        return VideoPrediction(
            v.label,
            v.p_fake,
            v.confidence,
            (),
            face_found,
            note,
            v.verdict,
            tuple(f for f, _ in judged),
            best_index,
            best_frame,
        )
