"""The app in a real browser: Debian's Chromium driven by Playwright against the served app.

Covers what the API tests cannot: the page renders, the file input and a real
drag-and-drop reach the model, the verdict and error toasts show. Screenshots
land in artifacts/ (gitignored) for a human to look at.
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
VERDICT = re.compile(r"^(Real|AI-generated|Uncertain) \(p=")
TIMEOUT_MS = 60_000  # first request loads the model; the machine may be busy training

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    page.locator("#input-image input[type=file]").wait_for(state="attached")
    yield page
    context.close()


@pytest.fixture(scope="module")
def tall_image(tmp_path_factory) -> Path:
    """Portrait, so a dropped image is told apart from the landscape one by the heatmap's shape."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:240, 0:120]
    pixels = np.stack([x * 2, y, 255 - y], axis=-1) + rng.normal(0, 10, (240, 120, 3))
    path = tmp_path_factory.mktemp("tall") / "tall.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def screenshot(page, name: str) -> Path:
    """Full page, once short animations (a toast flying in) have finished; a toast's countdown bar is not waited for."""
    page.wait_for_function(
        "() => document.getAnimations().every(a => a.playState !== 'running' || a.effect.getTiming().duration > 2000)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def heatmap_aspect(page) -> float:
    """Width / height of the displayed Grad-CAM image, from its decoded pixels."""
    image = page.locator("#heatmap img")
    image.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    return width / height


def test_upload_shows_verdict_probabilities_and_heatmap(page):
    from playwright.sync_api import expect

    expect(page.locator("body")).to_contain_text("convitx_tiny")  # the model header, filled on page load
    page.locator("#input-image input[type=file]").set_input_files(str(ROOT / "examples" / "city_night.jpg"))
    verdict = page.locator("#verdict textarea")
    expect(verdict).to_have_value(VERDICT)
    expect(verdict).to_have_value(re.compile(r"threshold 0\.5"))
    probabilities = page.locator("#probabilities")
    expect(probabilities).to_contain_text("ai_generated")
    expect(probabilities).to_contain_text("real")
    assert heatmap_aspect(page) == pytest.approx(512 / 224, rel=0.02)
    page.get_by_text("Model card", exact=True).click()
    expect(page.get_by_text("test card")).to_be_visible()
    screenshot(page, "app_upload.png")


def test_drag_and_drop(page, tall_image):
    """A real drop event carrying a File in its DataTransfer, as a desktop drag delivers it."""
    from playwright.sync_api import expect

    data = base64.b64encode(tall_image.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: "image/png"}));
            return transfer;
        }""",
        [data, tall_image.name],
    )
    target = page.locator("#input-image input[type=file]").locator("xpath=..")
    for event in ("dragenter", "dragover", "drop"):
        target.dispatch_event(event, {"dataTransfer": transfer})
    expect(page.locator("#verdict textarea")).to_have_value(VERDICT)
    assert heatmap_aspect(page) == pytest.approx(120 / 240, rel=0.02)
    screenshot(page, "app_drop.png")


def test_example_click(page):
    from playwright.sync_api import expect

    page.get_by_text("Still life (synthetic render)").click()
    expect(page.locator("#verdict textarea")).to_have_value(VERDICT)
    assert heatmap_aspect(page) == pytest.approx(288 / 384, rel=0.02)


def test_bad_file_shows_readable_error(page, bad_files):
    """show_error=False hides unexpected exceptions, but gr.Error messages still reach the user."""
    from playwright.sync_api import expect

    page.locator("#input-image input[type=file]").set_input_files(str(bad_files["not_image.png"]))
    toast = page.get_by_text("not_image.png is not an image format we can read")
    expect(toast).to_be_visible()
    screenshot(page, "app_error.png")
    assert "/tmp" not in toast.inner_text()


def test_evidence_panel_shows_the_c2pa_claim(page, tmp_path):
    from playwright.sync_api import expect

    from provenance_files import c2pa_sign, encode, make_chain, photo

    path = tmp_path / "signed.png"
    path.write_bytes(c2pa_sign(encode(photo(), "PNG"), "image/png", make_chain("OpenAI Test")))
    page.locator("#input-image input[type=file]").set_input_files(str(path))
    expect(page.locator("#verdict textarea")).to_have_value(re.compile(r"^AI-generated \(decided by the file's own provenance"))
    evidence = page.locator("#evidence")
    expect(evidence).to_contain_text("C2PA Content Credentials")
    expect(evidence).to_contain_text("OpenAI Test Signer")
    expect(evidence).to_contain_text("only claimed")
    screenshot(page, "app_evidence.png")
