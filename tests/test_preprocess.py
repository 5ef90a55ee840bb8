"""The preprocessing contract: RGB order, scaling, normalisation, and bad-input messages."""

import cv2
import numpy as np
import pytest

from deepfake.errors import ImageError
from deepfake.preprocess import Preprocess, check_image_file, decode_image, read_image


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
        (b"", "empty"),
        (b"hello, I am a text file", "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "truncated JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "truncated PNG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9", "could not be decoded"),
    ],
)
def test_bad_bytes_raise_a_named_problem(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_truncated_jpeg_file_is_spotted_without_decoding(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    good, cut = tmp_path / "good.jpg", tmp_path / "cut.jpg"
    good.write_bytes(buf.tobytes())
    cut.write_bytes(buf.tobytes()[: len(buf) // 2])
    assert check_image_file(good) is None
    assert "truncated" in check_image_file(cut)
    assert "cannot read" in check_image_file(tmp_path / "missing.jpg")


def test_bad_contract_values_are_rejected():
    with pytest.raises(ValueError, match="image_size"):
        Preprocess(0)
    with pytest.raises(ValueError, match="std"):
        Preprocess(32, std=(0, 1, 1))
