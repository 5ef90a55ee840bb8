"""The verdict band: a model file's two thresholds make three verdicts a person can read (likely fake at or above
the threshold, likely real below the lower one, uncertain between), chosen on validation by export and followed
by the predictor, the API and the page; files from before the band keep their two-way verdicts."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import API, jpeg

from deepfake.contract import LIKELY_FAKE, LIKELY_REAL, UNCERTAIN, threshold_low_metadata, threshold_metadata
from deepfake.errors import ModelError
from deepfake.export.onnx_file import update_metadata
from deepfake.metrics import threshold_at_fnr
from deepfake.predictor import Predictor, default_model_path
from deepfake.web import create_app
from deepfake.web.pages import VERDICT_WORDS

OLD_MODEL = Path(__file__).parent / "data" / "old_default.onnx"


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2, 0.5])
def test_the_lower_threshold_keeps_at_most_the_stated_share_of_fakes_below_it(rate):
    rng = np.random.default_rng(1)
    p, y = rng.uniform(0, 1, 500), (rng.uniform(0, 1, 500) < 0.4).astype(int)
    low = threshold_at_fnr(p, y, rate)
    fakes = np.sort(p[y == 1])
    allowed = int(np.floor(rate * fakes.size + 1e-9))
    assert (fakes < low).sum() == allowed  # exactly the share allowed, not fewer: the highest such threshold
    assert low <= fakes[allowed] and float(np.float32(low)) <= fakes[allowed]
    assert low == round(low, 9) and len(f"{low}") <= 12  # a figure a person can read
    with pytest.raises(ValueError, match="no fake images"):
        threshold_at_fnr(p, np.zeros_like(y), rate)


def banded_copy(tmp_path: Path, low: float, high: float) -> Path:
    """The bundled model with thresholds written in by hand."""
    path = tmp_path / "banded.onnx"
    shutil.copy(default_model_path(), path)
    update_metadata(path, threshold_metadata(high, "fixed") | threshold_low_metadata(low, "fixed", 0.05, 0.5))
    return path


@pytest.fixture(scope="module")
def three_bands(tmp_path_factory):
    """Images and a model file whose thresholds put them into each band: (file, {band: image bytes})."""
    images = [jpeg(seed, noisy=seed % 2 == 1) for seed in range(12)]
    scores = sorted((v.p_fake, image) for v, image in zip(Predictor().predict_batch(images), images, strict=True))
    (p_low, _), (p_mid, _), (p_high, _) = scores[0], scores[len(scores) // 2], scores[-1]
    assert p_low < p_mid < p_high
    low, high = (p_low + p_mid) / 2, (p_mid + p_high) / 2
    path = banded_copy(tmp_path_factory.mktemp("bands"), low, high)
    return path, {LIKELY_REAL: scores[0][1], UNCERTAIN: scores[len(scores) // 2][1], LIKELY_FAKE: scores[-1][1]}


def test_the_predictor_reads_three_bands_and_keeps_label_and_confidence(three_bands):
    path, images = three_bands
    predictor = Predictor(path)
    for band, image in images.items():
        v = predictor.predict(image)
        assert v.verdict == band and all(face.verdict for face in v.faces)
        # label and confidence keep their meaning: the two-way reading at the threshold.
        assert v.label == ("fake" if v.p_fake >= predictor.threshold else "real")
        assert v.confidence == pytest.approx(v.p_fake if v.label == "fake" else 1 - v.p_fake)
        assert v.to_dict()["verdict"] == band


def test_a_file_from_before_the_band_has_no_uncertain_verdict():
    old = Predictor(OLD_MODEL)
    assert old.contract.threshold_low is None and old.threshold_low == old.threshold
    verdicts = {old.verdict(p).verdict for p in np.linspace(0.001, 0.999, 200)}
    assert verdicts == {LIKELY_REAL, LIKELY_FAKE}


def test_a_lower_threshold_above_the_threshold_is_refused(tmp_path):
    path = banded_copy(tmp_path, 0.2, 0.4)
    update_metadata(path, threshold_low_metadata(0.6))
    with pytest.raises(ModelError, match="threshold_low 0.6 is above the threshold 0.4"):
        Predictor(path)


def test_a_server_threshold_below_the_file_s_lower_one_moves_the_band_down(three_bands):
    path, _ = three_bands
    low = Predictor(path).threshold_low
    assert Predictor(path, threshold=low / 2).threshold_low == low / 2


def test_the_api_and_the_page_say_each_band(three_bands):
    path, images = three_bands
    client = create_app({"TESTING": True, "MODEL": str(path)}).test_client()
    predictor = Predictor(path)
    for band, image in images.items():
        data = {"file": (io.BytesIO(image), "face.jpg")}
        result = client.post(API, data=data, content_type="multipart/form-data").get_json()["results"][0]
        assert result["verdict"] == band and result["label"] == predictor.predict(image).label
        data = {"file": (io.BytesIO(image), "face.jpg")}
        page = client.post("/upload", data=data).get_data(as_text=True)
        assert f'<span class="verdict">{VERDICT_WORDS[band]}</span>' in page
        # The gauge marks both thresholds and says what each means on validation.
        assert page.count('class="mark ') == 2
        assert f"Likely fake from {predictor.threshold:.2f}" in page
        assert f"likely real below {predictor.threshold_low:.2f} (5% of fake faces score below this)" in page
        assert "confidence" not in page.lower()
