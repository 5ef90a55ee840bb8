"""Aligned face crops: turned so the eyes are level, centred and sized by the face's own geometry.

A detector's box moves and changes size from one image of a face to the next; the eyes and mouth do not. So a
crop is placed from the keypoints (eyes and mouth centre):

- **angle**: the line from the right eye to the left eye becomes horizontal;
- **size**: the face's side is the larger of ``EYE_SPAN`` times the eye distance and ``MOUTH_SPAN`` times the
  distance from the eyes' midpoint to the mouth. A face turned sideways shortens the first, one tilted up or
  down the second, and the larger stays true;
- **centre**: ``CENTRE_DOWN`` of that side below the eyes' midpoint, along the face's own vertical.

The three constants were measured on faces-mini and dfdc-mini against dlib's HOG boxes (median face box side
2.38 and 2.17 eye distances, 2.24 and 2.09 eye-to-mouth distances; box centre 0.19 and 0.23 of a side below the
eyes), so a crop of ``margin`` times the side frames a face about as a HOG crop with the same margin did.
The crop is cut at the face's own resolution (``margin`` x side pixels square) and resized by the model's
:class:`~deepfake.preprocess.Preprocess` like any image; outside the image it is black.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

EYE_SPAN = 2.3  # face side / eye distance
MOUTH_SPAN = 2.2  # face side / distance from the eyes' midpoint to the mouth
CENTRE_DOWN = 0.2  # face centre below the eyes' midpoint, as a share of the side


def face_frame(keypoints: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(centre (x, y), side in pixels, angle in degrees) of the face whose keypoints are (right eye, left eye, nose,
    mouth, ...) in pixels: the square an aligned crop is cut around, before its margin."""
    points = np.asarray(keypoints, np.float64)
    right_eye, left_eye, mouth = points[0], points[1], points[3]
    eyes = (right_eye + left_eye) / 2
    across = left_eye - right_eye
    eye_distance = float(np.hypot(*across))
    # The face's vertical: perpendicular to the eye line, pointing to the mouth's side of it.
    down = np.array([-across[1], across[0]]) / max(eye_distance, 1e-6)
    if np.dot(mouth - eyes, down) < 0:
        down = -down
    mouth_distance = float(np.hypot(*(mouth - eyes)))
    side = max(EYE_SPAN * eye_distance, MOUTH_SPAN * mouth_distance, 1.0)
    angle = math.degrees(math.atan2(across[1], across[0]))
    return eyes + CENTRE_DOWN * side * down, side, angle


def crop_matrix(keypoints: np.ndarray, margin: float) -> tuple[np.ndarray, int]:
    """The 2x3 affine that maps image pixels into the aligned crop, and the crop's side in pixels."""
    centre, side, angle = face_frame(keypoints)
    out = max(1, round(margin * side))
    # Rotate about the face's centre by its angle (eyes level), then move that centre to the crop's centre.
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    matrix[:, 2] += (out / 2 - centre[0], out / 2 - centre[1])
    return matrix, out


def aligned_crop(rgb: np.ndarray, keypoints: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The aligned crop of one face (uint8 RGB, square) and the affine that maps image pixels into it."""
    matrix, out = crop_matrix(keypoints, margin)
    crop = cv2.warpAffine(rgb, matrix, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return crop, matrix


def to_crop(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Image pixels (N, 2) -> pixels of the crop that ``matrix`` (from :func:`aligned_crop`) cut."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]
