"""The app in a real browser: Debian's Chromium driven by Playwright against the served app.

Covers what the API tests cannot: the page renders, the file input and a real
drag-and-drop reach the model, the verdict card (words and colour), the heatmap
toggle, the spectrum, the batch tab with its CSV download, error toasts (and that the next
analysis closes them), the card's words for each verdict, and a phone-width layout.
Screenshots land in artifacts/ (gitignored) for a human to look at.
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
VERDICT = re.compile(r"^(Likely AI-generated — \d+%|Likely real|Can't tell)")
CARD_CLASS = re.compile(r"verdict-(ai|real|uncertain)")
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


def card(page):
    """The verdict card's own element (the one with the colour class)."""
    return page.locator("#verdict-card .verdict-card")


def expect_verdict(page) -> None:
    from playwright.sync_api import expect

    expect(card(page).locator(".verdict-title")).to_have_text(VERDICT)
    expect(card(page)).to_have_class(CARD_CLASS)


def image_src(page, selector: str) -> str:
    image = page.locator(f"{selector} img")
    image.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return image.get_attribute("src")


def test_upload_shows_card_bars_heatmap_tabs_and_spectrum(page):
    from playwright.sync_api import expect

    expect(page.locator("body")).to_contain_text("convitx_tiny")  # the model header, filled on page load
    page.locator("#input-image input[type=file]").set_input_files(str(ROOT / "examples" / "city_night.jpg"))
    expect_verdict(page)
    expect(card(page).locator(".verdict-reason")).to_contain_text("The pixel model gives")
    # The card's colour follows its class (red / green / amber), not the default grey.
    colour = card(page).evaluate("el => getComputedStyle(el).borderLeftColor")
    assert colour in {"rgb(217, 48, 37)", "rgb(24, 128, 56)", "rgb(242, 153, 0)"}, colour
    probabilities = page.locator("#probabilities")
    expect(probabilities).to_contain_text("AI-generated")
    expect(probabilities).to_contain_text("Real")
    expect(probabilities).not_to_contain_text("ai_generated")
    assert heatmap_aspect(page) == pytest.approx(512 / 224, rel=0.02)
    # The heatmap toggle: one entry per branch, named from the config; each shows a different image.
    views = page.locator("#heatmap-view")
    for name in ("Both branches (fused)", "ConvNeXt branch", "Swin branch"):
        expect(views).to_contain_text(name)
    sources = {image_src(page, "#heatmap")}
    for name in ("ConvNeXt branch", "Swin branch"):
        views.get_by_text(name).click()
        page.wait_for_function("([sel, seen]) => { const i = document.querySelector(sel); "
                               "return i && i.complete && i.naturalWidth > 0 && !seen.includes(i.getAttribute('src')); }",
                               arg=["#heatmap img", list(sources)])
        sources.add(image_src(page, "#heatmap"))
        assert heatmap_aspect(page) == pytest.approx(512 / 224, rel=0.02)
    assert len(sources) == 3
    # The spectrum: computed on the 512x224 centre crop, with a line on how to read it.
    src = image_src(page, "#spectrum")
    width, height = page.locator("#spectrum img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert (width, height) == (512, 224) and src
    expect(page.locator("#spectrum-help")).to_contain_text("bright isolated dots or lines")
    page.get_by_text("Model card", exact=True).click()
    expect(page.get_by_text("test card")).to_be_visible()
    screenshot(page, "app_upload.png")


def test_phone_width(browser, app_url):
    """At 390 px the page stacks into one column and nothing overflows sideways."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(app_url)
        page.locator("#input-image input[type=file]").set_input_files(str(ROOT / "examples" / "landscape.jpg"))
        expect_verdict(page)
        image_src(page, "#heatmap")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        box = card(page).bounding_box()
        assert box["width"] <= 390 and box["x"] >= 0
        screenshot(page, "app_phone.png")
    finally:
        context.close()


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
    expect_verdict(page)
    assert heatmap_aspect(page) == pytest.approx(120 / 240, rel=0.02)
    screenshot(page, "app_drop.png")


def test_example_click(page):
    from playwright.sync_api import expect

    page.get_by_text("Still life (synthetic render)").click()
    expect_verdict(page)
    assert heatmap_aspect(page) == pytest.approx(288 / 384, rel=0.02)


def test_bad_file_clears_the_input_and_shows_the_message(page, bad_files):
    """After a good image, a bad upload: the input is emptied (no broken-image icon), the card and a toast
    say why, and the old verdict and heatmap are gone."""
    from playwright.sync_api import expect

    upload = page.locator("#input-image input[type=file]")
    upload.set_input_files(str(ROOT / "examples" / "landscape.jpg"))
    expect_verdict(page)
    upload.set_input_files(str(bad_files["not_image.png"]))
    message = "not_image.png is not an image format we can read"
    expect(card(page)).to_contain_text(message)
    expect(card(page)).to_have_class(re.compile("verdict-error"))
    expect(card(page)).to_contain_text("Cannot read this image")
    toast = page.locator(".toast-body").filter(has_text=message)
    expect(toast).to_be_visible()
    expect(page.locator("#input-image img")).to_have_count(0)
    expect(page.locator("#heatmap img")).to_have_count(0)
    screenshot(page, "app_error.png")
    assert "/tmp" not in card(page).inner_text()
    # The toast has no timeout (duration=None): it stays while its image is the page's subject, so it can
    # only be gone below because the next analysis closed it.
    upload.set_input_files(str(ROOT / "examples" / "landscape.jpg"))  # and the page still works
    expect_verdict(page)
    expect(page.locator(".toast-body")).to_have_count(0)
    # The same for an example click after a bad upload.
    upload.set_input_files(str(bad_files["not_image.png"]))
    expect(toast).to_be_visible()
    page.get_by_text("Still life (synthetic render)").click()
    expect_verdict(page)
    expect(page.locator(".toast-body")).to_have_count(0)


def test_evidence_panel_shows_the_c2pa_claim(page, tmp_path):
    from playwright.sync_api import expect

    from provenance_files import c2pa_sign, encode, make_chain, photo

    path = tmp_path / "signed.png"
    path.write_bytes(c2pa_sign(encode(photo(), "PNG"), "image/png", make_chain("OpenAI Test")))
    page.locator("#input-image input[type=file]").set_input_files(str(path))
    expect(card(page).locator(".verdict-title")).to_have_text("Likely AI-generated — the file's own metadata says so")
    expect(card(page)).to_have_class(re.compile("verdict-ai"))
    evidence = page.locator("#evidence")
    expect(evidence).to_contain_text("C2PA Content Credentials")
    expect(evidence).to_contain_text("OpenAI Test Signer")
    expect(evidence).to_contain_text("only claimed")
    screenshot(page, "app_evidence.png")


def test_batch_tab_table_and_csv(page, bad_files, tall_image, tmp_path):
    """Three files, one bad: a row each (the bad one an error row, the others with thumbnails), CSV downloads."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Batch").click()
    expect(page.locator("body")).to_contain_text("up to 100 images")
    files = [ROOT / "examples" / "city_night.jpg", bad_files["not_image.png"], tall_image]
    page.locator("#batch-files input[type=file]").set_input_files([str(f) for f in files])
    expect(page.locator("#batch-files")).to_contain_text(re.compile(r"tall\s*\.png"))
    page.locator("#batch-run").click()
    rows = page.locator("#batch-table tbody tr")
    expect(rows).to_have_count(3, timeout=TIMEOUT_MS)
    expect(rows.nth(0)).to_contain_text("city_night.jpg")
    expect(rows.nth(1)).to_contain_text("Error")
    expect(rows.nth(1)).to_contain_text("not an image format we can read")
    expect(rows.nth(2)).to_contain_text("tall.png")
    for i in (0, 2):
        expect(rows.nth(i).locator("td.batch-verdict")).to_have_text(re.compile(r"^(Likely AI-generated|Likely real|Can't tell)$"))
        expect(rows.nth(i).locator("img.batch-thumb")).to_have_count(1)
        expect(rows.nth(i)).to_contain_text("%")
    link = page.locator("#batch-csv a").first
    expect(link).to_be_visible()
    with page.expect_download() as info:
        link.click()
    path = tmp_path / "results.csv"
    info.value.save_as(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "file,verdict,p_ai_generated,decided_by,reason,error"
    assert [line.split(",")[0] for line in lines[1:]] == ["city_night.jpg", "not_image.png", "tall.png"]
    assert lines[2].split(",")[1] == "error"
    screenshot(page, "app_batch.png")


# --------------------------------------------------------------------------- the card's words for each verdict


@pytest.fixture(scope="module")
def three_verdicts(tiny_checkpoint, tmp_path_factory):
    """The app serving the tiny checkpoint with a decision rule placed between three examples' scores, so that
    one reads "Real", one "Can't tell" and one "AI-generated". Returns (url, rule, {verdict: (image, p)})."""
    import json
    import shutil

    import app
    from corpus import free_port
    from detector import DecisionRule, Detector

    detector = Detector.from_pretrained(tiny_checkpoint, device="cpu")
    names = ("landscape.jpg", "still_life.png", "city_night.jpg")
    scores = sorted((detector.predict(ROOT / "examples" / name, cam=False).p_fake, name) for name in names)
    (p1, _), (p2, _), (p3, _) = scores
    assert p1 < p2 < p3, f"the tiny model gives two examples the same score: {scores}"
    lo, hi = (p1 + p2) / 2, (p2 + p3) / 2
    rule = DecisionRule(threshold=(lo + hi) / 2, uncertain_band=(lo, hi))
    folder = tmp_path_factory.mktemp("rule") / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["decision"].update(threshold=rule.threshold, uncertain_band=list(rule.uncertain_band))
    (folder / "config.json").write_text(json.dumps(config))
    demo = app.build_demo(str(folder))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            **app.LAUNCH_KWARGS)
    yield url.rstrip("/"), rule, dict(zip(("real", "uncertain", "ai_generated"), scores))
    demo.close()


def test_card_wording_for_each_verdict(browser, three_verdicts):
    """Title, colour and reason of the card for a Real, a Can't tell and an AI-generated verdict; the rule is the
    header's sentence, and the percentage shown agrees with it."""
    from playwright.sync_api import expect

    url, rule, images = three_verdicts
    words = rule.describe()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(url)
        expect(page.locator("body")).to_contain_text(f"Verdicts: {words}")
        upload = page.locator("#input-image input[type=file]")
        for label, title, css in (("real", "Likely real", "verdict-real"), ("uncertain", "Can't tell", "verdict-uncertain"),
                                  ("ai_generated", "Likely AI-generated — {}", "verdict-ai")):
            p, name = images[label]
            shown = rule.percent(p)
            upload.set_input_files(str(ROOT / "examples" / name))
            expect(card(page).locator(".verdict-title")).to_have_text(title.format(shown))
            expect(card(page)).to_have_class(re.compile(css))
            expect(card(page).locator(".verdict-reason")).to_have_text(
                f"The pixel model gives {shown} for AI-generated. Its rule: {words}. No AI provenance in the file.")
            if rule.digits == 0:  # the bars print whole percent (Gradio's Label rounds)
                expect(page.locator("#probabilities")).to_contain_text(shown)
            expect(page.locator("#evidence")).to_contain_text(f"Its rule: {words}.")
            screenshot(page, f"app_card_{label}.png")
    finally:
        context.close()
