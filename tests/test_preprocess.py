"""The preprocessing contract: RGB order, scaling, normalisation, thresholds, and bad-input messages."""

import cv2
import numpy as np
import pytest

from deepfake.errors import ConfigError, ImageError
from deepfake.images import check_image_file, decode_image, read_image
from deepfake.predictor import verdict
from deepfake.preprocess import Preprocess, check_threshold


def encoded(suffix: str) -> bytes:
    ok, buf = cv2.imencode(suffix, np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_decoded_pixels_are_rgb(tmp_path, ext):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 250  # pure red in RGB
    path = tmp_path / f"red{ext}"
    cv2.imwrite(str(path), rgb[..., ::-1])  # OpenCV writes BGR
    out = read_image(path)
    assert out.shape == (16, 16, 3)
    assert out[..., 0].mean() > 240 and out[..., 2].mean() < 15


def test_normalise_scales_then_standardises():
    pre = Preprocess(8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    x = pre(np.full((8, 8, 3), 255, np.uint8))
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [2.0, 1.0, 0.5], rtol=1e-6)


def test_plain_contract_is_unit_range():
    x = Preprocess(8)(np.full((8, 8, 3), 51, np.uint8))
    np.testing.assert_allclose(x, 0.2, rtol=1e-6)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (lambda: b"", "empty"),
        (lambda: b"hello, I am a text file", "not an image"),
        (lambda: encoded(".jpg")[:2000], "truncated JPEG"),
        (lambda: encoded(".png")[:2000], "truncated PNG"),
        (lambda: b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9", "not an image, or a damaged one"),
        (lambda: b"GIF89a" + encoded(".png")[6:], "not an image"),  # a format OpenCV does not decode
    ],
)
def test_bad_bytes_raise_a_named_problem(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data())


def test_truncated_jpeg_file_is_spotted_without_decoding(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    good, cut = tmp_path / "good.jpg", tmp_path / "cut.jpg"
    good.write_bytes(buf.tobytes())
    cut.write_bytes(buf.tobytes()[: len(buf) // 2])
    assert check_image_file(good) is None
    assert "truncated" in check_image_file(cut)
    assert "cannot read" in check_image_file(tmp_path / "missing.jpg")


def test_threshold_is_checked_once_for_every_caller_and_decides_the_label():
    assert check_threshold("0.25") == 0.25
    for bad in (0, 1, 1.5, -0.1, "nan", "high", None):
        with pytest.raises(ConfigError, match="must be strictly between 0 and 1"):
            check_threshold(bad)
    assert verdict(0.7, 0.5).label == "fake" and verdict(0.7, 0.5).confidence == 0.7
    assert verdict(0.3, 0.5).label == "real" and verdict(0.3, 0.5).confidence == pytest.approx(0.7)
    assert verdict(0.5, 0.5).label == "fake"  # p_fake >= threshold reads fake
    assert verdict(0.6, 0.7).label == "real"


def test_bad_contract_values_are_rejected():
    with pytest.raises(ValueError, match="image_size"):
        Preprocess(0)
    with pytest.raises(ValueError, match="std"):
        Preprocess(32, std=(0, 1, 1))
