"""Self-blended pseudo-fake pairs (``data.pseudo_fakes=sbi``): the blender of ``data.sbi`` and the pairs a split
adds, each a real face and its blend (:mod:`deepfake.sbi`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfake.errors import ConfigError
from deepfake.sbi import BlendSettings, SelfBlender


def blender(sbi: dict | None) -> SelfBlender:
    """The SelfBlender of ``data.sbi``; an unknown key or a bad value is a ConfigError naming it."""
    try:
        return SelfBlender(BlendSettings(**(sbi or {})))
    except TypeError as exc:
        raise ConfigError(f"data.sbi: {exc}".replace("BlendSettings.__init__() ", "")) from exc


@dataclass
class PseudoFakes:
    """The pairs a split's dataset adds: ``count`` blends of ``sources`` (sample indices) taken in turn.

    ``seed`` None: each pair is drawn anew from the worker's seeded torch RNG (training); an int: pair k is always
    the same blend (validation and test of a split without fakes)."""

    blender: SelfBlender
    sources: list[int]
    points: list[np.ndarray]
    count: int
    seed: int | None = None
    # A split without fakes: its sources appear only in their pairs, so real and fake stay balanced.
    pairs_only: bool = False
