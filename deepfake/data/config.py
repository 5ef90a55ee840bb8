"""The ``data`` settings: the types of configs/data/*.yaml (their values live there), which Hydra checks every
override against, and from which the data module is built (:func:`data_settings`).

A new option is one field here and one key in configs/data/default.yaml; the code that uses it reads it from the
:class:`DataConfig` it is handed. The face stage's settings are :class:`deepfake.faces.FaceStage`'s own fields
(:data:`FaceConfig` is made from them), so a new face setting is one field of FaceStage and one key in the yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, make_dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from deepfake.errors import ConfigError
from deepfake.faces.detect import BLAZEFACE, COMMON_FIELDS, DETECTOR_FIELDS, DLIB_HOG, FaceStage


@dataclass
class AugmentConfig:
    enabled: bool = MISSING
    crop_scale: list[float] | None = MISSING
    crop_ratio: list[float] = MISSING
    hflip: float = MISSING
    rotation: float = MISSING
    brightness: float = MISSING
    contrast: float = MISSING
    jpeg_p: float = MISSING
    jpeg_quality: list[int] = MISSING
    blur_p: float = MISSING
    blur_sigma: list[float] = MISSING
    blur_kernel: int = MISSING
    outside_p: float = MISSING
    outside_zoom: list[float] = MISSING
    outside_zoom_blur: list[float] = MISSING
    outside_crop_blur: list[float] = MISSING
    outside_noise: list[float] = MISSING
    outside_memory: int = MISSING


# data.face: the fields of FaceStage but its detector (data.faces names it), with the yaml's values; in the yaml's
# order: the common settings, BlazeFace's, dlib's.
_FACE_FIELDS = {f.name: f for f in fields(FaceStage)}
FaceConfig = make_dataclass(
    "FaceConfig",
    [
        (name, type(_FACE_FIELDS[name].default), field(default=MISSING))
        for name in (*COMMON_FIELDS, *DETECTOR_FIELDS[BLAZEFACE], *DETECTOR_FIELDS[DLIB_HOG])
        if name != "detector"
    ],
)
FaceConfig.__module__ = __name__


@dataclass
class DataConfig:
    root: Any = MISSING  # a path, or a list of paths and of {root, name, manifest, group_by, ...} mappings
    manifest: str | None = MISSING
    group_by: str | None = MISSING
    balance: str = MISSING  # "none" or "dataset"
    image_size: int = MISSING
    batch_size: int = MISSING
    drop_last: bool = MISSING  # training leaves out its last, smaller batch
    num_workers: Any = MISSING  # "auto" or a count
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    faces: str = MISSING  # "none", "blazeface" or "dlib"
    face: FaceConfig = field(default_factory=FaceConfig)  # type: ignore[valid-type]
    face_cache: str = MISSING
    no_face: str = MISSING  # "drop" or "whole"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pseudo_fakes: str = MISSING  # "none" or "sbi"
    pseudo_fakes_ratio: float = MISSING
    sbi: dict[str, Any] = field(default_factory=dict)  # deepfake.sbi.BlendSettings' fields
    landmark_cache: str = MISSING


FACE_DETECTORS = {"blazeface": "blazeface", "dlib": "dlib_hog"}
NO_FACE = ("drop", "whole")
BALANCE = ("none", "dataset")
PSEUDO_FAKES = ("none", "sbi")


def data_settings(data: DataConfig | DictConfig | Mapping) -> DataConfig:
    """``data`` (the composed ``data`` node, a mapping of all its keys, or a DataConfig) as a DataConfig, its values
    resolved and of the schema's types: what the data module reads."""
    if isinstance(data, DataConfig):
        return data
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), data))


def face_stage(data: DataConfig) -> FaceStage | None:
    """The FaceStage of ``data.faces`` and ``data.face``; None for ``data.faces=none``."""
    if data.faces in (None, "none"):
        return None
    if data.faces not in FACE_DETECTORS:
        raise ConfigError(f"data.faces={data.faces} must be one of none, {', '.join(FACE_DETECTORS)}")
    face = asdict(data.face) if is_dataclass(data.face) else dict(data.face or {})
    return FaceStage(detector=FACE_DETECTORS[data.faces], **face)
