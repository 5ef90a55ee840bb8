"""The upload page in a real headless browser (Debian's chromium driven by Playwright), served by gunicorn.

Skips when Playwright or a chromium binary is missing; `.ci/run` installs chromium so CI runs it.
"""

import os
import shutil

import pytest
from conftest import FACES_MINI
from test_web import gif, jpeg, start_gunicorn

from deepfake.predictor import Predictor

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

CANDIDATES = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
CHROMIUM = next((path for path in CANDIDATES if path and os.path.exists(path)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process, url = start_gunicorn(tmp_path_factory.mktemp("browser"))
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


@pytest.fixture(scope="module")
def faces():
    """One faces-mini image of each class that the bundled model gets right, so each verdict is known in advance."""
    if not FACES_MINI.is_dir():
        pytest.skip(f"faces-mini not found at {FACES_MINI}")
    predictor = Predictor()
    chosen = {}
    for label in ("real", "fake"):
        paths = sorted((FACES_MINI / label.capitalize()).glob("*.jpg"))[:20]
        chosen[label] = next(p for p, v in zip(paths, predictor.predict_batch(paths), strict=True) if v.label == label)
    return chosen


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
    verdict = page.locator(".result .verdict").inner_text(timeout=30_000)
    confidence = float(page.locator("meter.confidence").get_attribute("value"))
    return verdict, confidence


@pytest.mark.parametrize("label", ["real", "fake"])
def test_uploading_a_face_shows_its_verdict(server, page, faces, label, tmp_path):
    # A local copy, same name and bytes: the browser reads the file itself, and CI's shared folder is a mount
    # whose quirks are not the page's to test.
    path = tmp_path / faces[label].name
    shutil.copyfile(faces[label], path)
    page.goto(server + "/")
    page.set_input_files("#file", str(path))
    wait_for_preview(page)  # the script's preview, before anything is sent
    page.click("button[type=submit]")
    verdict, confidence = read_verdict(page)
    expected = Predictor().predict(path)
    assert verdict == label.capitalize() == expected.label.capitalize()
    assert confidence == pytest.approx(expected.confidence, abs=1e-3)
    assert page.locator(".result .filename").inner_text() == path.name


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


def test_dropping_an_image_and_asking_for_a_heatmap(server, page, tmp_path):
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
    assert verdict == Predictor().predict(jpeg(3, size=128)).label.capitalize()
    heatmap = page.locator(".heatmap img")
    assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
    assert heatmap.evaluate("img => img.naturalWidth") == 128  # the overlay decoded at the image's size


def test_the_form_works_without_javascript(server, browser, tmp_path):
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
        assert verdict == Predictor().predict(image).label.capitalize()
        page.set_input_files("#file", str(unsupported))
        page.click("button[type=submit]")
        assert "not an image in a supported format" in page.locator("#error .message").inner_text(timeout=30_000)
    finally:
        context.close()


def test_the_page_runs_under_its_content_security_policy(server, page):
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    assert page.evaluate("getComputedStyle(document.querySelector('.drop')).borderStyle") == "dashed"  # CSS loaded
    assert errors == []  # no script or style blocked, no script error
