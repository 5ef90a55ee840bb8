"""The upload page in a real headless browser (Debian's chromium driven by Playwright), served by gunicorn.

Skips when Playwright or a chromium binary is missing; `.ci/run` installs chromium so CI runs it. The server runs
the bundled model with a face stage (added to a copy of it while the bundled file records none), so the page
shows what it shows for photos: faces boxed, a note when none is found, a timeline for videos.
"""

import json
import os
import re
import shutil
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import FACES_MINI, face_photo, start_gunicorn
from helpers import API, gif, jpeg, multipart

from deepfake.faces import FaceStage
from deepfake.images import encode_image
from deepfake.predictor import Predictor, default_model_path
from deepfake.video import write_video
from deepfake.web.pages import VERDICT_WORDS

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

CANDIDATES = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
CHROMIUM = next((path for path in CANDIDATES if path and os.path.exists(path)), None)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The bundled model if it records a face stage; until it is retrained with one, a copy that records the
    default stage (same network, same threshold)."""
    bundled = default_model_path()
    if Predictor(bundled).model_face_stage is not None:
        return bundled
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[dev]')")
    from deepfake.contract import face_metadata

    proto = onnx.load(str(bundled))
    for key, value in face_metadata(FaceStage()).items():
        proto.metadata_props.add(key=key, value=value)
    path = tmp_path_factory.mktemp("model") / "faces.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    """The model the server runs, loaded here to know its answers in advance."""
    return Predictor(model)


@pytest.fixture(scope="module")
def server(tmp_path_factory, model):
    process, url = start_gunicorn(tmp_path_factory.mktemp("browser"), DEEPFAKE_MODEL=str(model))
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium refuses its sandbox. --disable-dev-shm-usage: containers
        # often give /dev/shm 64 MB, too little for chromium's shared memory.
        args = ["--no-sandbox", "--disable-dev-shm-usage"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
def errors(page) -> list[str]:
    """The page's console errors and uncaught exceptions, collected from here on: a script or style that the
    Content-Security-Policy blocks shows up here, and nowhere else."""
    collected: list[str] = []
    page.on("console", lambda message: collected.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: collected.append(str(exc)))
    return collected


@pytest.fixture(scope="module")
def faces(predictor):
    """One faces-mini image of each class that the model gets right as a face crop (the face stage off), so each
    verdict is known in advance. The model reads aligned crops, framed tighter than faces-mini's own, so judged
    whole few fakes read fake (9 of the first 200): the page is under test here, not the model."""
    if not FACES_MINI.is_dir():
        pytest.skip(f"faces-mini not found at {FACES_MINI}")
    chosen = {}
    for label in ("real", "fake"):
        paths = sorted((FACES_MINI / label.capitalize()).glob("*.jpg"))[:200]
        verdicts = predictor.predict_batch(paths, faces=False)
        chosen[label] = next(p for p, v in zip(paths, verdicts, strict=True) if v.label == label)
    return chosen


def api_answer(server: str, path: Path) -> dict:
    """The JSON API's result for the same file, from the same server: what the page should show."""
    body, content_type = multipart(path.read_bytes(), path.name)
    request = urllib.request.Request(server + API, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["results"][0]


def upload(page, server: str, path: Path) -> None:
    page.goto(server + "/")
    page.set_input_files("#file", str(path))
    page.click("button[type=submit]")
    page.locator(".result").wait_for(timeout=60_000)


def assert_answered_in_place(page) -> None:
    """The script's XMLHttpRequest carried the upload and swapped the answer in: a plain form post (what the
    script falls back to when the request is blocked) would have navigated to /deepfake."""
    assert urlparse(page.url).path == "/", (
        f"the page navigated to {page.url}: the upload went as a plain form post, not by the script's "
        "XMLHttpRequest (does the Content-Security-Policy allow connect-src 'self'?)"
    )


def wait_for_preview(page) -> None:
    """Waits until the script's preview has decoded the chosen image.

    The preview loads from a blob URL asynchronously: right after the file is chosen the <img> can still be 0x0,
    and CI (slower file reads) caught it there, so a one-shot is_visible() check raced the browser.
    """
    preview = page.locator("#preview")
    try:
        page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0", timeout=30_000)
    except sync_api.TimeoutError:
        state = preview.evaluate("img => ({hidden: img.hidden, src: img.src, complete: img.complete})")
        pytest.fail(f"the preview never showed the chosen image: {state}")
    sync_api.expect(preview).to_be_visible()
    assert preview.get_attribute("src").startswith("blob:")


def read_verdict(page) -> tuple[str, float]:
    """The headline's verdict band in words, and p(fake) from the gauge."""
    verdict = page.locator(".result .verdict").inner_text(timeout=30_000)
    score = float(page.locator("meter.score").get_attribute("value"))
    return verdict, score


@pytest.mark.parametrize("label", ["real", "fake"])
def test_uploading_a_face_crop_shows_its_verdict(server, page, predictor, faces, label, tmp_path):
    # A local copy, same name and bytes: the browser reads the file itself, and CI's shared folder is a mount
    # whose quirks are not the page's to test.
    path = tmp_path / faces[label].name
    shutil.copyfile(faces[label], path)
    page.goto(server + "/")
    page.set_input_files("#file", str(path))
    wait_for_preview(page)  # the script's preview, before anything is sent
    page.check("input[name=faces]")  # faces-mini images are face crops already
    page.click("button[type=submit]")
    verdict, score = read_verdict(page)
    expected = predictor.predict(path, faces=False)
    assert expected.label == label and verdict == VERDICT_WORDS[expected.verdict]
    assert score == pytest.approx(expected.p_fake, abs=1e-3)
    assert page.locator(".result .filename").inner_text() == path.name
    # The whole crop was judged, as the box asked: no face search, so no face boxes and no "no face" note.
    assert page.locator(".result g.face").count() == 0
    assert page.locator(".result .note").count() == 0


def test_a_non_image_shows_a_readable_error(server, page, tmp_path):
    fake_jpeg = tmp_path / "holiday.jpg"
    fake_jpeg.write_text("this is a text file with an image's name")
    page.goto(server + "/service")
    page.set_input_files("#file", str(fake_jpeg))
    page.click("button[type=submit]")
    error = page.locator("#error")
    assert "415" in error.locator("h2").inner_text(timeout=30_000)
    assert "holiday.jpg: not an image" in error.locator(".message").inner_text()
    assert page.locator(".result").count() == 0


def test_dropping_an_image_and_asking_for_a_heatmap(server, page, predictor, tmp_path):
    page.goto(server + "/")
    data = list(jpeg(3, size=128))
    page.evaluate(
        """(bytes) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"}));
            const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true});
            document.querySelector(".drop").dispatchEvent(drop);
        }""",
        data,
    )
    wait_for_preview(page)
    assert page.locator(".drop-text").inner_text() == "dropped.jpg"
    page.check("input[name=heatmap]")
    page.click("button[type=submit]")
    verdict, _ = read_verdict(page)
    assert verdict == VERDICT_WORDS[predictor.predict(jpeg(3, size=128)).verdict]
    heatmap = page.locator(".heatmap img")
    assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
    assert heatmap.evaluate("img => img.naturalWidth") == 128  # the overlay decoded at the image's size


def test_the_form_works_without_javascript(server, browser, predictor, tmp_path):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        image, unsupported = tmp_path / "face.jpg", tmp_path / "anim.gif"
        image.write_bytes(jpeg(4))
        unsupported.write_bytes(gif())
        page.goto(server + "/")
        page.set_input_files("#file", str(image))
        assert not page.locator("#preview").is_visible()  # no script, no preview: a plain form
        page.click("button[type=submit]")
        verdict, _ = read_verdict(page)
        assert verdict == VERDICT_WORDS[predictor.predict(image).verdict]
        page.set_input_files("#file", str(unsupported))
        page.click("button[type=submit]")
        message = page.locator("#error .message").inner_text(timeout=30_000)
        assert "anim.gif: not an image or video in a supported format" in message
    finally:
        context.close()


def test_the_page_runs_under_its_content_security_policy(server, page):
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    assert page.evaluate("getComputedStyle(document.querySelector('.drop')).borderStyle") == "dashed"  # CSS loaded
    assert errors == []  # no script or style blocked, no script error


def test_two_faces_are_boxed_and_listed(server, page, errors, tmp_path):
    path = tmp_path / "two.jpg"
    path.write_bytes(encode_image(face_photo([(20, 20, 200), (260, 20, 200)], shape=(240, 480)), ".jpg", 95))
    expected = api_answer(server, path)
    assert len(expected["faces"]) == 2, expected  # both drawn faces are found
    upload(page, server, path)
    verdict, score = read_verdict(page)
    assert verdict == VERDICT_WORDS[expected["verdict"]]
    assert score == pytest.approx(expected["p_fake"], abs=1e-3)
    assert "2 faces" in page.locator(".result .details").inner_text()

    picture = page.locator(".result figure.annotated svg")
    assert picture.get_attribute("viewBox") == "0 0 480 240"  # the upload's pixels, which the boxes are in
    assert picture.locator("image").get_attribute("href").startswith("data:image/jpeg;base64,")
    boxes = picture.locator("g.face")
    assert boxes.count() == 2
    for k, face in enumerate(expected["faces"]):
        box = boxes.nth(k)
        assert box.get_attribute("class").split() == ["face", face["verdict"]]  # its colour: the CSS's by class
        rect = box.locator("rect.box")
        assert [int(rect.get_attribute(name)) for name in ("x", "y", "width", "height")] == face["box"]
        words = VERDICT_WORDS[face["verdict"]].lower()
        assert box.locator("text").text_content() == f"{k + 1}: {words} {face['p_fake']:.2f}"
    # Drawn, and every box and label inside the picture: none is clipped by its edges.
    outside = picture.evaluate(
        """svg => {
            const frame = svg.getBoundingClientRect();
            return [...svg.querySelectorAll("g.face rect, g.face text")].map(e => [e, e.getBoundingClientRect()])
                .filter(([, r]) => !(r.width > 0 && r.height > 0 && r.left >= frame.left - 1 &&
                    r.right <= frame.right + 1 && r.top >= frame.top - 1 && r.bottom <= frame.bottom + 1))
                .map(([e, r]) => e.outerHTML + " at " + JSON.stringify(r));
        }"""
    )
    assert outside == []

    items = page.locator(".result ol.faces li")
    assert items.count() == 2
    for k, face in enumerate(expected["faces"]):
        text = items.nth(k).inner_text()
        assert text.startswith(f"Face {k + 1}: {VERDICT_WORDS[face['verdict']]}, p(fake) = {face['p_fake']:.3f}")
        assert f"p(fake) = {face['p_fake']:.3f}" in text
    assert page.locator(".result .note").count() == 0
    assert_answered_in_place(page)
    assert not [e for e in errors if "Content Security Policy" in e], errors
    assert errors == []


def test_a_video_shows_its_timeline_and_highest_scoring_frame(server, page, errors, predictor, tmp_path):
    frames = [face_photo([(20 + 4 * t, 20, 200)], shape=(240, 480)) for t in range(20)]
    frames[6] = frames[13] = face_photo([], shape=(240, 480))  # two frames without a face
    path = write_video(tmp_path / "walk.mp4", frames, fps=10)
    expected = api_answer(server, path)
    sampled = expected["frames"]
    with_face = {f["index"]: f for f in sampled if f["p_fake"] is not None}
    assert 0 < len(with_face) < len(sampled), sampled

    page.goto(server + "/")
    page.set_input_files("#file", str(path))
    assert page.locator(".drop-text").inner_text() == "walk.mp4"  # a video: its name, as there is no preview
    assert not page.locator("#preview").is_visible()
    # What the progress bar and status line do during the upload, seen as it happens: on loopback the upload
    # can be over before any check from here could look.
    page.evaluate(
        """() => {
            const progress = document.getElementById("progress");
            const status = document.getElementById("status");
            window.seen = {progress: false, status: []};
            new MutationObserver(() => { window.seen.progress ||= !progress.hidden; })
                .observe(progress, {attributes: true});
            new MutationObserver(() => window.seen.status.push(status.textContent))
                .observe(status, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.click("button[type=submit]")
    verdict, score = read_verdict(page)
    assert_answered_in_place(page)
    seen = page.evaluate("window.seen")
    assert seen["progress"] or any(seen["status"]), seen
    assert page.locator("#progress").is_hidden()  # the answer's form starts afresh
    assert verdict == VERDICT_WORDS[expected["verdict"]]
    assert score == pytest.approx(expected["p_fake"], abs=1e-3)

    details = page.locator(".result .details").inner_text()
    assert f"video, {len(with_face)} of {len(sampled)} sampled frames with a face" in details
    timeline = page.locator(".result figure.timeline svg")
    assert timeline.locator("circle.frame").count() == len(with_face)
    assert timeline.locator("line.no-face").count() == len(sampled) - len(with_face)
    # Both thresholds are marked, when the file has a band: likely fake from the upper, likely real below the lower.
    banded = predictor.threshold_low < predictor.threshold
    assert timeline.locator("line.threshold").count() == (2 if banded else 1)
    for k, index in enumerate(with_face):
        circle = timeline.locator("circle.frame").nth(k)
        band = predictor.verdict(with_face[index]["p_fake"]).verdict
        assert circle.get_attribute("class").split() == ["frame", band]
        assert circle.locator("title").text_content().startswith(f"frame {index} at ")

    best = page.locator(".result figure.annotated")
    caption = best.locator("figcaption").inner_text()
    shown = int(re.match(r"frame (\d+) at", caption).group(1))
    assert shown in with_face  # the frame shown had a face...
    assert with_face[shown]["p_fake"] == max(f["p_fake"] for f in with_face.values())  # ...and scored highest
    boxes = best.locator("svg g.face rect.box")
    assert boxes.count() == len(with_face[shown]["faces"]) >= 1
    for k, face in enumerate(with_face[shown]["faces"]):
        assert [int(boxes.nth(k).get_attribute(n)) for n in ("x", "y", "width", "height")] == face["box"]
    assert errors == []


def test_an_image_without_a_face_says_its_verdict_is_unreliable(server, page, errors, tmp_path):
    path = tmp_path / "gradient.jpg"
    path.write_bytes(jpeg(5, size=160))
    expected = api_answer(server, path)
    assert expected["face_found"] is False and expected["note"], expected
    upload(page, server, path)
    verdict, _ = read_verdict(page)
    assert verdict == VERDICT_WORDS[expected["verdict"]]  # still judged, as a whole image
    note = page.locator(".result .note")
    assert note.is_visible()
    text = note.inner_text()
    assert "no face was found" in text and "unreliable" in text.lower()
    assert expected["note"] in text
    assert page.locator(".result g.face").count() == 0
    assert page.locator(".result ol.faces").count() == 0
    assert errors == []


def test_each_verdict_band_reads_in_words_on_a_gauge_with_both_thresholds(tmp_path_factory, browser, model, errors):
    """A copy of the model whose thresholds put three uploads in three bands: the headline says the band in
    words, the gauge shows p(fake) between the two marks, and no verdict comes with a "confidence"."""
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[dev]')")
    from deepfake.contract import threshold_low_metadata, threshold_metadata

    folder = tmp_path_factory.mktemp("bands")
    paths = []
    for seed in range(12):
        paths.append(folder / f"upload{seed}.jpg")
        paths[-1].write_bytes(jpeg(seed, size=128, noisy=seed % 2 == 1))
    scores = sorted((v.p_fake, path) for v, path in zip(Predictor(model).predict_batch(paths), paths, strict=True))
    lowest, middle, highest = scores[0], scores[len(scores) // 2], scores[-1]
    assert lowest[0] < middle[0] < highest[0]
    proto = onnx.load(str(model))
    thresholds = threshold_metadata((middle[0] + highest[0]) / 2, "fixed") | threshold_low_metadata(
        (lowest[0] + middle[0]) / 2, "fixed", 0.05, 0.5
    )
    kept = [p for p in proto.metadata_props if p.key not in thresholds]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in thresholds.items():
        proto.metadata_props.add(key=key, value=value)
    banded = folder / "banded.onnx"
    onnx.save(proto, str(banded))
    process, url = start_gunicorn(folder, DEEPFAKE_MODEL=str(banded))
    context = browser.new_context()
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        for band, (p_fake, path) in zip(
            ("likely_real", "uncertain", "likely_fake"), (lowest, middle, highest), strict=True
        ):
            upload(page, url, path)
            verdict, score = read_verdict(page)
            assert verdict == VERDICT_WORDS[band] and score == pytest.approx(p_fake, abs=1e-3)
            assert band in page.locator(".result").get_attribute("class").split()
            assert page.locator(".result .gauge .mark").count() == 2
            assert "uncertain between them" in page.locator(".result .scale").inner_text()
            assert "confidence" not in page.locator(".result").inner_text().lower()
    finally:
        context.close()
        process.terminate()
        process.wait(timeout=30)
    assert errors == []
