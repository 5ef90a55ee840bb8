"""Image format and size from headers alone (Pillow), and the pixel limit that refuses decompression bombs
before decoding."""

import io

import cv2
import numpy as np
import pytest
from conftest import FACES_MINI
from helpers import png_bomb

from deepfake.errors import ImageError
from deepfake.images import (
    IMAGE_FORMAT_SUFFIX,
    MAX_PIXELS,
    ImageTooLargeError,
    check_image_file,
    check_pixels,
    decode_image,
    image_format,
    read_header,
)
from deepfake.predictor import Predictor


def image_size(data: bytes) -> tuple[int, int]:
    return read_header(data)[1:]


@pytest.fixture(scope="session")
def bomb() -> bytes:
    return png_bomb()


def encode(suffix: str, shape, params=(), dtype=np.uint8) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, shape).astype(dtype)
    ok, buf = cv2.imencode(suffix, pixels, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("suffix", "params"),
    [
        (".jpg", ()),
        (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        (".png", ()),
        (".bmp", ()),
        (".webp", ()),
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),  # lossless: the VP8L header
        (".tif", ()),
    ],
)
@pytest.mark.parametrize("shape", [(37, 53, 3), (300, 17, 3), (20, 30), (1, 1, 3)])
def test_header_size_matches_the_decoded_size(suffix, params, shape):
    data = encode(suffix, shape, params)
    decoded = decode_image(data)
    assert image_size(data) == (decoded.shape[1], decoded.shape[0]) == (shape[1], shape[0])
    assert IMAGE_FORMAT_SUFFIX[image_format(data)] == suffix


def test_header_size_of_other_writers_layouts():
    """PIL writes layouts OpenCV does not: EXIF, CMYK and greyscale JPEG, palette PNG, extended WebP, top-down BMP."""
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.fromarray(np.random.default_rng(1).integers(0, 255, (41, 67, 3), np.uint8))

    def saved(img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    exif = image_module.Exif()
    exif[0x0112] = 6  # rotated: OpenCV turns it upright, so width and height swap but the pixel count stays
    for data in (
        saved(image, "JPEG", exif=exif.tobytes()),
        saved(image.convert("CMYK"), "JPEG"),
        saved(image.convert("L"), "JPEG"),
        saved(image.convert("P"), "PNG"),
        saved(image.convert("RGBA"), "WEBP"),  # alpha: the VP8X header
        saved(image, "WEBP", lossless=True),
        saved(image, "TIFF", compression="tiff_lzw"),
        saved(image.convert("P"), "BMP"),
    ):
        assert image_size(data) == (67, 41)
        assert decode_image(data).size == 67 * 41 * 3


def test_a_decompression_bomb_is_refused_before_decoding(bomb, monkeypatch):
    assert len(bomb) < 1_000_000 and image_size(bomb) == (10_000, 10_000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the bomb reached the decoder")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(ImageTooLargeError, match="10000x10000 = 100.0 megapixels is over the limit of 40 megapixels"):
        decode_image(bomb)
    with pytest.raises(ImageTooLargeError):
        Predictor().predict(bomb)  # the predictor and infer.py decode through the same function


def test_the_limit_is_inclusive_and_adjustable(tmp_path):
    data = encode(".png", (100, 200, 3))
    assert decode_image(data, max_pixels=20_000).shape == (100, 200, 3)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=19_999)
    check_pixels(200, 100, None)
    assert decode_image(png_bomb(50, 50), max_pixels=None).shape == (50, 50, 3)
    assert MAX_PIXELS == 40_000_000
    (tmp_path / "big.png").write_bytes(data)
    assert "over the limit of 0.019999 megapixels" in check_image_file(tmp_path / "big.png", max_pixels=19_999)


def test_a_dataset_check_refuses_a_bomb_without_decoding_it(bomb, tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("the check decoded pixels"))
    (tmp_path / "bomb.png").write_bytes(bomb)
    assert "100.0 megapixels is over the limit" in check_image_file(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 20 + b"\xff\xd9",  # JPEG without a frame header
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 8 + b"IEND",  # PNG whose first chunk is not IHDR
        b"BM" + b"\x00" * 10,  # BMP cut inside its header
        b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 20,  # WebP without the VP8 start code
        b"II*\x00\xff\xff\x00\x00",  # TIFF whose directory lies outside the file
        png_bomb(0, 5),  # zero width
    ],
)
def test_headers_without_a_readable_size_are_refused(data):
    assert image_format(data) is None
    with pytest.raises(ImageError, match="not an image, or a damaged one"):
        decode_image(data)


def test_every_faces_mini_header_is_read():
    files = sorted((FACES_MINI / "Fake").glob("*"))[:100] + sorted((FACES_MINI / "Real").glob("*"))[:100]
    if not files:
        pytest.skip(f"faces-mini not found at {FACES_MINI}")
    for path in files:
        data = path.read_bytes()
        height, width = decode_image(data).shape[:2]
        assert image_size(data) == (width, height), path
