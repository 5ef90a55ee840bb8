"""The model-file contract: every metadata key of an exported ONNX file is written and read here, and nowhere else.

An exported file carries, in its ONNX ``metadata_props`` (flat string keys, JSON values where structured),
everything an app needs to use it without this repository's training code: how pixels become its input
(:class:`~deepfake.preprocess.Preprocess`), which face stage comes first (:class:`~deepfake.faces.FaceStage`),
how the verdicts on the faces of an image and on the frames of a video are combined, what its outputs mean,
its calibration and its threshold. export.py writes them with the functions below, the torch-free
:class:`~deepfake.predictor.Predictor` reads them back with :func:`parse_contract` and hard-codes nothing.
The key strings never change: files in use and other readers depend on them.

=====================  ==============================================================================
key                    meaning
=====================  ==============================================================================
deepfake.contract      the contract's version, "1"; a file without it is not a deepfake model file
labels                 JSON ["real", "fake"]: label order of the two classes
positive_class         "fake": the class whose probability ``p_fake`` is
input_name             the graph's input ("image"), float32 (batch, 3, S, S)
output_name            the graph's probability output ("p_fake"), shape (batch,)
output                 what the outputs are, in words (p_fake, logit, attention)
input_layout           "NCHW"
input_size             S: the square side every input is resized to
colour_order           "RGB" or "BGR": channel order of the input
resize                 "area", "linear" or "cubic": the OpenCV interpolation of that resize
scale                  pixels are multiplied by it (1/255: [0, 1]) ...
mean, std              ... then normalised with these JSON lists, one value per channel
face_<field>           the face stage, one key per field of FaceStage.to_dict() (face_detector, face_margin,
                       ...): JSON values, a string as itself; no face_detector key: whole images are read
aggregate_faces        how the faces found in one image make its p_fake: "max" (as fake as its most fake
                       face) or "mean"; absent: "max"
aggregate_frames       how the sampled frames of a video (those with a face) make its p_fake: "mean", "max"
                       or "median"; absent: "mean"
threshold              p_fake >= threshold reads as the positive class
threshold_rule         how the threshold was chosen: "fixed", or "fpr:<rate>" on the validation split
threshold_val_fpr      the validation false positive rate at the threshold, images judged by aggregate_faces
threshold_val_tpr      the validation true positive rate there
threshold_low          p_fake below it reads "likely real", from it up to threshold "uncertain" (the verdict band);
                       absent: threshold (no uncertain band)
threshold_low_rule     how it was chosen: "fixed", or "fnr:<rate>" (at most that share of validation fakes below it)
threshold_low_val_fnr  the share of validation fakes below threshold_low, images judged by aggregate_faces
threshold_low_val_tnr  the share of validation reals below it
temperature            T: the graph's p_fake is sigmoid(logit / T); absent: T = 1 (not calibrated)
calibration            JSON: how T was fitted (method, data, images, ECE and NLL before and after) or why not
val_ece_before         validation ECE of sigmoid(logit), images judged by aggregate_faces
val_ece_after          the same after temperature scaling
attention_output       the name of the attention-mask output, for attention-head models only
model_name, model_config, data, test_metrics, parameters, producer, created: what the model is and where it
                       came from (informative; JSON where structured)
=====================  ==============================================================================

This module imports numpy, OpenCV (through the preprocessing and the face stage) and the standard library only,
never torch or onnxruntime, so the torch-free predictor can use it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepfake.errors import ConfigError, ModelError
from deepfake.faces.detect import FaceStage
from deepfake.preprocess import (
    DEFAULT_THRESHOLD,
    LABELS,
    POSITIVE_CLASS,
    Preprocess,
    check_temperature,
    check_threshold,
)

CONTRACT_VERSION = "1"
# The graph's input and outputs; an attention-head model's file has the third output too.
INPUT_NAME, OUTPUT_NAME, LOGIT_NAME, ATTENTION_NAME = "image", "p_fake", "logit", "attention"

# ---------------------------------------------------------------------------
# The keys (see the table above)

VERSION_KEY = "deepfake.contract"
LABELS_KEY = "labels"
POSITIVE_CLASS_KEY = "positive_class"
INPUT_NAME_KEY = "input_name"
OUTPUT_NAME_KEY = "output_name"
OUTPUT_KEY = "output"
INPUT_LAYOUT_KEY = "input_layout"
INPUT_SIZE_KEY = "input_size"
COLOUR_KEY = "colour_order"
RESIZE_KEY = "resize"
SCALE_KEY = "scale"
MEAN_KEY = "mean"
STD_KEY = "std"
FACE_PREFIX = "face_"
FACE_DETECTOR_KEY = FACE_PREFIX + "detector"
AGGREGATE_FACES_KEY = "aggregate_faces"
AGGREGATE_FRAMES_KEY = "aggregate_frames"
THRESHOLD_KEY = "threshold"
THRESHOLD_RULE_KEY = "threshold_rule"
THRESHOLD_VAL_FPR_KEY = "threshold_val_fpr"
THRESHOLD_VAL_TPR_KEY = "threshold_val_tpr"
THRESHOLD_LOW_KEY = "threshold_low"
THRESHOLD_LOW_RULE_KEY = "threshold_low_rule"
THRESHOLD_LOW_VAL_FNR_KEY = "threshold_low_val_fnr"
THRESHOLD_LOW_VAL_TNR_KEY = "threshold_low_val_tnr"
# The verdict bands, from the file's two thresholds: what a person reads (label and confidence stay for scripts).
LIKELY_REAL, UNCERTAIN, LIKELY_FAKE = "likely_real", "uncertain", "likely_fake"
VERDICTS = (LIKELY_REAL, UNCERTAIN, LIKELY_FAKE)
TEMPERATURE_KEY = "temperature"
CALIBRATION_KEY = "calibration"
VAL_ECE_BEFORE_KEY = "val_ece_before"
VAL_ECE_AFTER_KEY = "val_ece_after"
ATTENTION_KEY = "attention_output"
# What the model is and where it came from: informative, never needed to run it.
MODEL_NAME_KEY = "model_name"
DATA_KEY = "data"
ABOUT_KEYS = (MODEL_NAME_KEY, "model_config", DATA_KEY, "test_metrics", "parameters", "producer", "created")

FIXED_RULE = "fixed"  # threshold_rule of a threshold given as a number

# ---------------------------------------------------------------------------
# Aggregation: how the faces of an image, and the frames of a video, make one p_fake

FACE_RULES = ("max", "mean")
FRAME_RULES = ("mean", "max", "median")
# Files written before the aggregation keys existed were judged by these, so a file without the keys still is.
DEFAULT_FACE_RULE, DEFAULT_FRAME_RULE = "max", "mean"

_REDUCE = {"max": np.max, "mean": np.mean, "median": np.median}


def check_aggregation(faces: str = DEFAULT_FACE_RULE, frames: str = DEFAULT_FRAME_RULE) -> tuple[str, str]:
    """``(faces, frames)`` when they are rules this code applies, else ConfigError naming the setting."""
    for value, rules, name in ((faces, FACE_RULES, AGGREGATE_FACES_KEY), (frames, FRAME_RULES, AGGREGATE_FRAMES_KEY)):
        if value not in rules:
            raise ConfigError(f"{name}={value!r} is not one of {', '.join(rules)}")
    return faces, frames


def aggregate_faces(p_fake: Sequence[float] | np.ndarray, rule: str = DEFAULT_FACE_RULE) -> float:
    """One image's p_fake from its faces' p_fake: ``max``, the most fake face decides (one fake face in a group
    photo makes the photo fake); ``mean``, every face counts alike."""
    return _aggregate(p_fake, rule, FACE_RULES, "faces")


def aggregate_frames(p_fake: Sequence[float] | np.ndarray, rule: str = DEFAULT_FRAME_RULE) -> float:
    """One video's p_fake from its sampled frames' p_fake (each already aggregated over its faces): ``mean``,
    ``max`` or ``median``."""
    return _aggregate(p_fake, rule, FRAME_RULES, "frames")


def _aggregate(values, rule: str, rules: tuple[str, ...], what: str) -> float:
    if rule not in rules:
        raise ConfigError(f"aggregate_{what}={rule!r} is not one of {', '.join(rules)}")
    array = np.asarray(values, np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"no {what} to aggregate")
    return float(_REDUCE[rule](array))


def aggregate_logits(logits: Sequence[float] | np.ndarray, rule: str = DEFAULT_FACE_RULE) -> float:
    """One image's logit from its faces' logits, for fitting a temperature T on images judged by ``rule``.

    ``max``: the largest logit. This is exact for every T: sigmoid is increasing and T > 0, so
    sigmoid(max z / T) = max sigmoid(z / T), the p_fake the calibrated file gives the image. So T fitted on these
    per-image logits is the maximum-likelihood T of the file's image-level p_fake.

    ``mean``: the logit of the faces' mean p_fake at T = 1, logit(mean sigmoid(z)). The file's p_fake for the
    image is mean sigmoid(z / T), which no single logit reproduces for every T: this one is exact at T = 1 and
    whenever the faces agree, and close while their logits are (the usual case: faces of one photo share its
    source). T fitted on it is then an approximation of the maximum-likelihood T; the threshold never depends on
    it, since export reads that off the written file's own p_fake.
    """
    z = np.asarray(logits, np.float64).reshape(-1)
    if z.size == 0:
        raise ValueError("no logits to aggregate")
    if rule == "max" or (rule == "mean" and z.size == 1):
        return float(z.max())
    if rule == "mean":
        # log(mean sigmoid(z)) - log(mean sigmoid(-z)), in log space: exact for large |z| too.
        return float(np.logaddexp.reduce(-np.logaddexp(0.0, -z)) - np.logaddexp.reduce(-np.logaddexp(0.0, z)))
    raise ConfigError(f"aggregate_faces={rule!r} is not one of {', '.join(FACE_RULES)}")


def deciding_face(p_fake: Sequence[float] | np.ndarray, rule: str = DEFAULT_FACE_RULE) -> int:
    """The index of the face an explanation should show: under ``max`` the one that decides the verdict (the most
    fake); under ``mean`` no single face does, and the most fake is the one that pulls the image's p_fake up most."""
    if rule not in FACE_RULES:
        raise ConfigError(f"aggregate_faces={rule!r} is not one of {', '.join(FACE_RULES)}")
    return int(np.argmax(np.asarray(p_fake, np.float64).reshape(-1)))


# ---------------------------------------------------------------------------
# The metadata of a file


def metadata_of(model) -> dict[str, str]:
    """The metadata of an ONNX model: an ``onnx.ModelProto`` or an ``onnxruntime.InferenceSession``."""
    if hasattr(model, "get_modelmeta"):
        return dict(model.get_modelmeta().custom_metadata_map)
    return {prop.key: prop.value for prop in model.metadata_props}


def set_metadata(model, meta: dict[str, str]) -> None:
    """Make ``meta`` the whole metadata of an ``onnx.ModelProto`` (in memory; the caller saves it)."""
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)


# ---------------------------------------------------------------------------
# Writing


def _encode(value: Any) -> str:
    """A metadata value: JSON, except a string that JSON would not read back (such as "dlib_hog"), kept as it is."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def _decode(text: str) -> Any:
    """The inverse of :func:`_encode`."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def face_metadata(stage: FaceStage | None) -> dict[str, str]:
    """The face stage as ``face_<field>`` keys, one per field of ``stage.to_dict()``; none for whole images."""
    if stage is None:
        return {}
    return {f"{FACE_PREFIX}{name}": _encode(value) for name, value in stage.to_dict().items()}


ATTENTION_TEXT = f"{ATTENTION_NAME}: the attention mask in [0, 1], shape (batch, 1, h, w) at feature resolution"


def output_text(temperature: float | None = None) -> str:
    """The ``output`` key: the graph's outputs in words (:func:`attention_metadata` adds the attention output)."""
    if temperature is None:
        return f"{OUTPUT_NAME}: probability of {POSITIVE_CLASS!r}, shape (batch,); {LOGIT_NAME}: its logit"
    # The logit output stays the network's own, so the stored T says how the two outputs relate.
    return (
        f"{OUTPUT_NAME}: probability of {POSITIVE_CLASS!r}, sigmoid({LOGIT_NAME} / temperature), shape (batch,); "
        f"{LOGIT_NAME}: the network's logit, before temperature scaling"
    )


def contract_metadata(
    preprocess: Preprocess,
    threshold: float = DEFAULT_THRESHOLD,
    faces: FaceStage | None = None,
    *,
    temperature: float | None = None,
    aggregate_faces: str = DEFAULT_FACE_RULE,
    aggregate_frames: str = DEFAULT_FRAME_RULE,
    threshold_rule: str | None = None,
    **about,
) -> dict[str, str]:
    """The strings export.py stores in ``metadata_props``.

    ``faces``: the face stage the model was trained with (``face_*`` keys); a file without them is read on whole
    images. ``temperature``: the T of the graph's p_fake = sigmoid(logit / T) (temperature scaling); a file
    without the key was exported before calibration and has T = 1. ``aggregate_faces``, ``aggregate_frames``: how
    faces and frames are combined (:data:`FACE_RULES`, :data:`FRAME_RULES`). ``about``: what the model is
    (:data:`ABOUT_KEYS`, such as ``model_name``), JSON-encoded unless already strings.
    """
    threshold = check_threshold(threshold)
    aggregate_faces, aggregate_frames = check_aggregation(aggregate_faces, aggregate_frames)
    if temperature is not None:
        temperature = check_temperature(temperature)
    meta = {
        VERSION_KEY: CONTRACT_VERSION,
        LABELS_KEY: json.dumps(list(LABELS)),
        POSITIVE_CLASS_KEY: POSITIVE_CLASS,
        INPUT_NAME_KEY: INPUT_NAME,
        OUTPUT_NAME_KEY: OUTPUT_NAME,
        OUTPUT_KEY: output_text(temperature),
        INPUT_LAYOUT_KEY: "NCHW",
        INPUT_SIZE_KEY: str(preprocess.image_size),
        COLOUR_KEY: preprocess.colour,
        RESIZE_KEY: preprocess.interpolation,
        SCALE_KEY: repr(preprocess.scale),
        MEAN_KEY: json.dumps(preprocess.mean),
        STD_KEY: json.dumps(preprocess.std),
        **threshold_metadata(threshold, threshold_rule),
        **face_metadata(faces),
        AGGREGATE_FACES_KEY: aggregate_faces,
        AGGREGATE_FRAMES_KEY: aggregate_frames,
    }
    if temperature is not None:
        meta[TEMPERATURE_KEY] = repr(temperature)
    meta.update({key: value if isinstance(value, str) else json.dumps(value) for key, value in about.items()})
    return meta


def threshold_metadata(
    threshold: float, rule: str | None = None, val_fpr: float | None = None, val_tpr: float | None = None
) -> dict[str, str]:
    """The threshold keys: the threshold, how it was chosen (``"fixed"``, ``"fpr:<rate>"``; None: no key) and the
    validation rates at it (None: no key)."""
    keys = (THRESHOLD_KEY, THRESHOLD_RULE_KEY, THRESHOLD_VAL_FPR_KEY, THRESHOLD_VAL_TPR_KEY)
    return _threshold_keys(keys, threshold, rule, val_fpr, val_tpr)


def threshold_low_metadata(
    threshold_low: float, rule: str | None = None, val_fnr: float | None = None, val_tnr: float | None = None
) -> dict[str, str]:
    """The lower threshold's keys, as :func:`threshold_metadata` writes the threshold's (rule ``"fnr:<rate>"``)."""
    keys = (THRESHOLD_LOW_KEY, THRESHOLD_LOW_RULE_KEY, THRESHOLD_LOW_VAL_FNR_KEY, THRESHOLD_LOW_VAL_TNR_KEY)
    return _threshold_keys(keys, threshold_low, rule, val_fnr, val_tnr)


def _threshold_keys(keys: tuple[str, str, str, str], value: float, rule, *rates: float | None) -> dict[str, str]:
    meta = {keys[0]: repr(check_threshold(value))}
    if rule is not None:
        meta[keys[1]] = str(rule)
    meta.update({key: f"{rate:.4f}" for key, rate in zip(keys[2:], rates, strict=True) if rate is not None})
    return meta


def verdict_band(p_fake: float, threshold: float, threshold_low: float | None = None) -> str:
    """The verdict a person reads: likely fake at or above ``threshold``, likely real below ``threshold_low``
    (None: the threshold itself, so no uncertain band), uncertain between them."""
    low = threshold if threshold_low is None else min(threshold_low, threshold)
    if p_fake >= threshold:
        return LIKELY_FAKE
    return LIKELY_REAL if p_fake < low else UNCERTAIN


def calibration_metadata(calibration: dict) -> dict[str, str]:
    """The calibration keys: export's account of the temperature fit (JSON), and the validation ECE before and
    after it when it was fitted (``calibration["fitted"]``, with ``ece_before`` and ``ece_after``)."""
    meta = {CALIBRATION_KEY: json.dumps(calibration)}
    if calibration.get("fitted"):
        meta[VAL_ECE_BEFORE_KEY] = f"{calibration['ece_before']:.4f}"
        meta[VAL_ECE_AFTER_KEY] = f"{calibration['ece_after']:.4f}"
    return meta


def attention_metadata(meta: dict[str, str]) -> dict[str, str]:
    """``meta`` for a graph with the attention output too: the key naming it, and the ``output`` text saying so."""
    return {**meta, ATTENTION_KEY: ATTENTION_NAME, OUTPUT_KEY: f"{meta.get(OUTPUT_KEY, '')}; {ATTENTION_TEXT}"}


# ---------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Contract:
    """A model file's metadata, read and checked (:func:`parse_contract`)."""

    preprocess: Preprocess
    labels: tuple[str, str]
    positive_class: str
    threshold: float
    input_name: str
    output_name: str
    faces: FaceStage | None = None  # None: the model reads whole images
    temperature: float = 1.0  # the graph's p_fake is sigmoid(logit / temperature); 1: not calibrated
    aggregate_faces: str = DEFAULT_FACE_RULE
    aggregate_frames: str = DEFAULT_FRAME_RULE
    states_temperature: bool = False  # whether the file has the temperature key (files before calibration lack it)
    threshold_rule: str | None = None
    threshold_val_fpr: float | None = None
    threshold_val_tpr: float | None = None
    threshold_low: float | None = None  # below it: likely real; None (files before the band): no uncertain band
    threshold_low_rule: str | None = None
    threshold_low_val_fnr: float | None = None
    threshold_low_val_tnr: float | None = None
    calibration: dict | None = None
    attention_name: str | None = None  # the attention output's name, for attention-head models
    model_name: str | None = None
    data: Any = field(default_factory=dict)  # the training data's description (JSON), {} when absent or unreadable


def parse_faces(meta: dict[str, str]) -> FaceStage | None:
    """The face stage a model file records (its ``face_*`` keys through ``FaceStage.from_dict``), or None for a
    model that reads whole images; ModelError when the keys do not make a stage."""
    if FACE_DETECTOR_KEY not in meta:
        return None
    values = {key.removeprefix(FACE_PREFIX): _decode(text) for key, text in meta.items() if key.startswith(FACE_PREFIX)}
    try:
        return FaceStage.from_dict(values)
    except (ValueError, TypeError, ConfigError) as exc:
        raise ModelError(f"model metadata has an invalid face stage: {exc}") from exc


def parse_contract(meta: dict[str, str]) -> Contract:
    """Read a model file's metadata_props back; ModelError names what is missing or wrong."""
    if meta.get(VERSION_KEY) != CONTRACT_VERSION:
        raise ModelError(
            "not a deepfake model file: its metadata lacks the preprocessing contract "
            f"({VERSION_KEY}={meta.get(VERSION_KEY)!r}); export it with export.py"
        )
    faces = parse_faces(meta)
    try:
        labels = tuple(json.loads(meta[LABELS_KEY]))
        positive = meta[POSITIVE_CLASS_KEY]
        if len(labels) != 2 or positive not in labels:
            raise ValueError(f"labels {labels} with positive class {positive!r}")
        preprocess = Preprocess(
            int(meta[INPUT_SIZE_KEY]),
            tuple(json.loads(meta[MEAN_KEY])),
            tuple(json.loads(meta[STD_KEY])),
            colour=meta[COLOUR_KEY],
            scale=float(meta[SCALE_KEY]),
            interpolation=meta[RESIZE_KEY],
        )
        threshold = check_threshold(meta[THRESHOLD_KEY])
        temperature = check_temperature(meta.get(TEMPERATURE_KEY, 1.0))
        face_rule, frame_rule = check_aggregation(
            meta.get(AGGREGATE_FACES_KEY, DEFAULT_FACE_RULE), meta.get(AGGREGATE_FRAMES_KEY, DEFAULT_FRAME_RULE)
        )
        rates = [float(meta[key]) if key in meta else None for key in (THRESHOLD_VAL_FPR_KEY, THRESHOLD_VAL_TPR_KEY)]
        low_rates = [
            float(meta[key]) if key in meta else None for key in (THRESHOLD_LOW_VAL_FNR_KEY, THRESHOLD_LOW_VAL_TNR_KEY)
        ]
        threshold_low = check_threshold(meta[THRESHOLD_LOW_KEY]) if THRESHOLD_LOW_KEY in meta else None
        if threshold_low is not None and threshold_low > threshold:
            raise ValueError(f"threshold_low {threshold_low} is above the threshold {threshold}")
        calibration = json.loads(meta[CALIBRATION_KEY]) if CALIBRATION_KEY in meta else None
        return Contract(
            preprocess,
            labels,
            positive,
            threshold,
            meta[INPUT_NAME_KEY],
            meta[OUTPUT_NAME_KEY],
            faces,
            temperature,
            face_rule,
            frame_rule,
            states_temperature=TEMPERATURE_KEY in meta,
            threshold_rule=meta.get(THRESHOLD_RULE_KEY),
            threshold_val_fpr=rates[0],
            threshold_val_tpr=rates[1],
            threshold_low=threshold_low,
            threshold_low_rule=meta.get(THRESHOLD_LOW_RULE_KEY),
            threshold_low_val_fnr=low_rates[0],
            threshold_low_val_tnr=low_rates[1],
            calibration=calibration,
            attention_name=meta.get(ATTENTION_KEY) or None,
            model_name=meta.get(MODEL_NAME_KEY) or None,
            data=_data(meta.get(DATA_KEY)),
        )
    except KeyError as exc:
        raise ModelError(f"model metadata lacks {exc.args[0]!r}; re-export the model with export.py") from exc
    except (ValueError, TypeError, ConfigError) as exc:
        raise ModelError(f"model metadata is invalid: {exc}") from exc


def _data(text: str | None) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}
