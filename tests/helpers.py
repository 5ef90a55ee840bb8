"""Helpers that several test modules use: generated images and uploads, the drawn face's landmarks. Fixtures live in
conftest.py."""

import functools
import struct
import zlib

import cv2
import numpy as np

API = "/api/v1/predict"


def jpeg(seed: int = 0, size: int = 96, noisy: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.stack([yy, xx, (yy + xx) / 2], -1) * rng.uniform(120, 220)
    if noisy:
        image = image + rng.normal(0, 40, image.shape)
    ok, buf = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8))
    assert ok
    return buf.tobytes()


def gif() -> bytes:
    """A valid 1x1 GIF: a real image in a format the decoder does not take."""
    return bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


def multipart(content: bytes, name: str) -> tuple[bytes, str]:
    boundary = "deepfake-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A valid greyscale PNG of zeros: 100 megapixels (300 MB once decoded to RGB) in about 100 KB."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    squash = zlib.compressobj(9)
    rows = b"\x00" * ((width + 1) * 1000)  # filter byte + pixels, a thousand rows at a time
    data = b"".join(squash.compress(rows[: (width + 1) * min(1000, height - y)]) for y in range(0, height, 1000))
    data += squash.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


@functools.lru_cache
def _drawn_points() -> np.ndarray:
    from deepfake.faces import mesh
    from deepfake.faces.drawing import draw_face

    found = mesh.face_mesh(draw_face(200, seed=0))
    assert found is not None, "the mesh no longer finds deepfake.faces.drawing's face"
    return found.xy / 200


def face_points(width: int, height: int) -> np.ndarray:
    """The mesh's 468 points on the drawn test face, stretched to a width x height frame."""
    return (_drawn_points() * (width, height)).astype(np.float32)


def fake_landmark_dataset(paths, cache, **kwargs):
    """Stands in for the mesh on generated images (gradients, no face): the drawn face's points on every frame."""
    out = []
    for path in paths:
        height, width = cv2.imread(str(path)).shape[:2]
        out.append(face_points(width, height))
    return out


@functools.cache
def _default_data():
    """configs/data/default.yaml as train.py composes it (data.root aside)."""
    from conftest import compose_train

    return compose_train("data.root=unused").data


def data_config(root, **values):
    """A data module's settings: configs/data/default.yaml with data.root (a path or a list) and ``values`` set."""
    from omegaconf import OmegaConf

    root = [str(r) for r in root] if isinstance(root, list | tuple) else str(root)
    return OmegaConf.merge(_default_data(), {"root": root, **values})


def augment_config(**values):
    """data.augment with every augmentation off but ``values`` (ranges as configs/data/default.yaml has them)."""
    from omegaconf import OmegaConf

    off = dict(enabled=True, crop_scale=None, hflip=0, rotation=0, brightness=0, contrast=0, jpeg_p=0, blur_p=0)
    return OmegaConf.to_object(OmegaConf.merge(_default_data().augment, off, {"outside_p": 0}, values))
