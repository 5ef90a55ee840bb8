"""Videos: recognised by content, sampled evenly, judged per face and frame, and every limit answered in words."""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import face_photo, face_video

from deepfake.errors import ImageError
from deepfake.images import ImageTooLargeError, encode_image
from deepfake.predictor import NO_FACE_VIDEO_NOTE, Predictor
from deepfake.video import (
    NoFramesError,
    VideoError,
    VideoTooLongError,
    even_indices,
    probe,
    sample_frames,
    video_format,
)
from deepfake.web import create_app

API = "/api/v1/predict"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return face_video(tmp_path_factory.mktemp("video") / "clip.mp4", n=20, fps=10)


def mjpeg_avi(path, frames, fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames[0].shape[1::-1])
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def no_decodable_frame(path):
    """An AVI whose header and index are whole but whose every JPEG frame is wiped: it opens, nothing decodes."""
    data = bytearray(mjpeg_avi(path, [face_photo([(0, 0, 200)], shape=(200, 200))] * 5).read_bytes())
    start = data.find(b"\xff\xd8")
    while start >= 0:
        data[start : start + 400] = bytes(400)
        start = data.find(b"\xff\xd8", start + 400)
    path.write_bytes(bytes(data))
    return path


def test_containers_are_recognised_by_content(tmp_path, clip):
    assert video_format(clip.read_bytes()[:64]) == "mp4"
    assert video_format(mjpeg_avi(tmp_path / "a.avi", [np.zeros((32, 32, 3), np.uint8)]).read_bytes()[:64]) == "avi"
    assert video_format(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") == "mov"
    assert video_format(b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1f\x42\x86\x81\x01\x42\x82\x84webm") == "webm"
    assert video_format(b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1f\x42\x82\x88matroska") == "mkv"
    assert video_format(encode_image(np.zeros((8, 8, 3), np.uint8), ".jpg")[:64]) is None
    assert video_format(b"") is None


def test_frames_are_sampled_evenly_and_only_those_are_decoded(clip, monkeypatch):
    assert even_indices(20, 4) == [2, 7, 12, 17]
    assert even_indices(3, 32) == [0, 1, 2]
    converted = []
    real = cv2.cvtColor
    monkeypatch.setattr(cv2, "cvtColor", lambda *args: (converted.append(1), real(*args))[1])
    frames = list(sample_frames(clip, 4))
    assert [f.index for f in frames] == [2, 7, 12, 17]
    assert [f.time_s for f in frames] == pytest.approx([0.2, 0.7, 1.2, 1.7])
    assert len(converted) == 4  # turned into RGB pixels: the sampled frames only
    assert frames[0].rgb.shape == (240, 320, 3) and frames[0].rgb.dtype == np.uint8


def test_every_limit_of_a_video_is_named(tmp_path, clip):
    with pytest.raises(VideoTooLongError, match="over the limit of"):
        list(sample_frames(clip, 4, max_duration_s=1.0))
    with pytest.raises(ImageTooLargeError, match="video frames"):
        list(sample_frames(clip, 4, max_pixels=320 * 240 - 1))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(VideoError, match="corrupt or truncated"):
        list(sample_frames(truncated, 4))
    with pytest.raises(NoFramesError, match="none of its frames"):
        list(sample_frames(no_decodable_frame(tmp_path / "wiped.avi"), 4))
    text = tmp_path / "notes.mp4"
    text.write_bytes(b"this is not a video at all, whatever its name says")
    with pytest.raises(VideoError, match="not a video"):
        probe(text)
    assert issubclass(VideoError, ImageError)


def test_a_video_scores_the_mean_over_frames_with_a_face(tmp_path, faces_model):
    predictor = Predictor(faces_model)
    video = face_video(tmp_path / "gaps.mp4", n=20, blank={2, 12})
    result = predictor.predict_video(video, 4)
    assert [f.index for f in result.frames] == [2, 7, 12, 17]
    with_face = [f for f in result.frames if f.p_fake is not None]
    assert [f.index for f in with_face] == [7, 17]  # blank frames have no face and no score
    assert result.face_found is True and result.note is None
    assert result.p_fake == pytest.approx(np.mean([f.p_fake for f in with_face]), abs=1e-6)
    for frame in with_face:
        assert len(frame.faces) == 1 and frame.p_fake == max(face.p_fake for face in frame.faces)
    assert result.best_index in (7, 17)
    as_json = result.to_dict()
    assert set(as_json["frames"][0]) == {"index", "time_s", "p_fake", "faces"}
    assert "best_frame" not in as_json


def test_a_video_without_faces_is_judged_on_whole_frames_with_a_note(tmp_path, faces_model):
    video = face_video(tmp_path / "blank.mp4", n=10, blank=set(range(10)))
    result = Predictor(faces_model).predict_video(video, 3)
    assert result.face_found is False and result.note == NO_FACE_VIDEO_NOTE
    assert all(f.p_fake is not None and not f.faces for f in result.frames)
    assert result.p_fake == pytest.approx(np.mean([f.p_fake for f in result.frames]), abs=1e-6)


# --- The web app: every limit a clear 4xx JSON error and a readable page message --------------------------------


@pytest.fixture(scope="module")
def client(faces_model):
    app = create_app(
        {
            "TESTING": True,
            "MODEL": str(faces_model),
            "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
            "MAX_IMAGE_BYTES": 200 * 1024,
            "MAX_VIDEO_SECONDS": 60.0,
            "MAX_PIXELS": 400 * 300,
        }
    )
    return app.test_client()


def post(client, route, content, name="clip.mp4", query=None):
    data = {"file": (io.BytesIO(content), name)}
    return client.post(route, data=data, query_string=query, content_type="multipart/form-data")


def test_a_video_through_the_api_answers_per_frame(client, clip):
    response = post(client, API, clip.read_bytes(), "holiday.bin", {"frames": "5"})
    assert response.status_code == 200, response.get_json()
    (result,) = response.get_json()["results"]
    assert result["kind"] == "video" and result["filename"] == "holiday.bin"
    assert [f["index"] for f in result["frames"]] == even_indices(20, 5)
    assert all(set(f) == {"index", "time_s", "p_fake", "faces"} for f in result["frames"])
    assert all(len(f["faces"]) == 1 for f in result["frames"])
    assert result["face_found"] is True and (result["width"], result["height"]) == (320, 240)


def test_a_request_spools_only_videos_and_leaves_no_file_behind(client, clip, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = []
    real = tempfile.TemporaryDirectory

    def spy(*args, **kwargs):
        folder = real(*args, **kwargs)
        made.append(Path(folder.name))
        return folder

    monkeypatch.setattr(tempfile, "TemporaryDirectory", spy)
    assert post(client, API, encode_image(np.full((60, 60, 3), 90, np.uint8), ".png"), "a.png").status_code == 200
    assert made == []  # an image is read in memory: no folder is made for it
    assert post(client, API, clip.read_bytes(), "clip.mp4", {"frames": "2"}).status_code == 200
    assert len(made) == 1 and made[0].parent == tmp_path and not made[0].exists()
    assert post(client, API, clip.read_bytes()[:1000], "cut.mp4").status_code == 415  # a refused video too
    assert len(made) == 2 and not made[1].exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("route", [API, "/deepfake"])
def test_video_limits_answer_4xx_in_words(client, clip, tmp_path, route):
    long_clip = face_video(tmp_path / "long.mp4", n=10, fps=0.1)  # 10 frames at 0.1 fps: 100 s
    big_frames = tmp_path / "big.avi"
    mjpeg_avi(big_frames, [np.zeros((400, 500, 3), np.uint8)] * 3)
    rows = [
        (b"\x00\x00\x00\x18ftypisom" + bytes(3 * 1024 * 1024), 413, "too_large", "over the limit of 2 MB"),
        (long_clip.read_bytes(), 413, "too_long", "over the limit of 1 minutes"),
        (big_frames.read_bytes(), 413, "too_many_pixels", "video frames"),
        (clip.read_bytes()[: clip.stat().st_size // 2], 415, "unsupported_video", "corrupt or truncated"),
        (no_decodable_frame(tmp_path / "wiped.avi").read_bytes(), 415, "no_frames", "none of its frames"),
    ]
    for content, status, code, message in rows:
        response = post(client, route, content)
        assert response.status_code == status, (code, response.get_data(as_text=True)[:300])
        if route == API:
            error = response.get_json()["error"]
            assert error["code"] == code and message in error["message"], error
        else:
            page = response.get_data(as_text=True)
            assert 'id="error"' in page and message in page and "Traceback" not in page


def test_images_keep_their_own_size_limit_under_the_larger_body_limit(client):
    big_png = encode_image(np.random.default_rng(0).integers(0, 255, (290, 390, 3), np.uint8), ".png")
    assert len(big_png) > 200 * 1024
    response = post(client, API, big_png, "big.png")
    assert response.status_code == 413
    assert "limit of 0.195312 MB for images" in response.get_json()["error"]["message"]


def test_bad_options_are_400(client, clip):
    for query in ({"faces": "maybe"}, {"frames": "0"}, {"frames": "many"}, {"frames": "100000"}):
        response = post(client, API, clip.read_bytes(), query=query)
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_option"
