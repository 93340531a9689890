"""The served app end to end: a real Gradio server, the real gradio_client, the tiny checkpoint. No mocks.

Fixtures (tests/conftest.py): ``app_url`` serves ``app.build_demo(tiny_checkpoint)``
with the launch settings of ``python app.py``; ``bad_files`` is the odd-file corpus.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import free_port
from detector import Detector, Prediction, load_image

ROOT = Path(__file__).resolve().parent.parent
# Gradio's queue trips pandas 3 deprecation warnings on every event: not ours to fix.
GRADIO_NOISE = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
pytestmark = [pytest.mark.timeout(300), *GRADIO_NOISE]

UNREADABLE = {
    "empty.png": "empty (0 bytes)",
    "not_image.png": "not an image format we can read",
    "truncated.jpg": "truncated or corrupted",
    "huge.png": "too large",
}
READABLE_ODD = ["rgba.png", "palette.gif", "grey16.png", "cmyk.jpg", "grey.png", "exif_rotated.jpg"]


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def library(tiny_checkpoint) -> Detector:
    """The same checkpoint through the library: the app must answer exactly what it answers."""
    return Detector.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def wide_image(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("wide") / "wide.png"
    Image.fromarray(rng.integers(0, 256, (150, 300, 3), dtype=np.uint8)).save(path)
    return path


def confidences(label_output: dict) -> dict[str, float]:
    return {item["label"]: item["confidence"] for item in label_output["confidences"]}


def assert_readable(message: str) -> None:
    assert message and "Traceback" not in message and "/tmp" not in message and "gradio" not in message.lower()


def test_only_predict_is_public(client):
    """The page-load and example events are private: the API is /predict and nothing else."""
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/predict"]
    assert not api["unnamed_endpoints"]
    [parameter] = api["named_endpoints"]["/predict"]["parameters"]
    assert parameter["parameter_name"] == "image"


def test_predict_returns_probabilities_heatmap_and_verdict(client, library, wide_image):
    label, overlay, verdict, report = client.predict(handle_file(wide_image), api_name="/predict")
    probs = confidences(label)
    assert set(probs) == {"real", "ai_generated"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    expected = library.predict(wide_image, cam=False)
    assert probs["ai_generated"] == pytest.approx(expected.p_fake, abs=1e-5)
    # The heatmap keeps the input's 2:1 aspect (it is drawn at the image's own size here).
    assert Image.open(overlay).size == (300, 150)
    assert "p=" in verdict and "threshold 0.5" in verdict
    assert verdict.split(" (")[0] in {"Real", "AI-generated", "Uncertain"}


@pytest.mark.parametrize("name", READABLE_ODD)
def test_odd_files_decode_like_the_library(client, library, bad_files, name):
    """The upload reaches detector.load_image untouched: 16-bit not whitened, EXIF applied, alpha on white."""
    path = bad_files[name]
    label, overlay, _, _ = client.predict(handle_file(path), api_name="/predict")
    assert confidences(label)["ai_generated"] == pytest.approx(library.predict(path, cam=False).p_fake, abs=1e-5)
    assert Image.open(overlay).size == load_image(path).size
    if name == "exif_rotated.jpg":
        assert Image.open(overlay).size == (150, 300)  # stored 300x150, displayed upright


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_files_give_readable_errors(client, bad_files, name):
    with pytest.raises(AppError) as info:
        client.predict(handle_file(bad_files[name]), api_name="/predict")
    message = str(info.value)
    assert UNREADABLE[name] in message and name in message
    assert_readable(message)


def test_server_still_answers_after_bad_files(client, bad_files, wide_image):
    for name in UNREADABLE:
        with pytest.raises(AppError):
            client.predict(handle_file(bad_files[name]), api_name="/predict")
    label, _, _, _ = client.predict(handle_file(wide_image), api_name="/predict")
    assert sum(confidences(label).values()) == pytest.approx(1.0, abs=1e-5)


def test_upload_over_max_file_size_is_refused(app_url, tmp_path):
    """max_file_size stops the upload itself: the file never reaches the disk cache or the decoder."""
    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(21 * 1024 * 1024))
    with big.open("rb") as file:
        response = httpx.post(f"{app_url}/gradio_api/upload", files={"files": file}, timeout=60)
    assert response.status_code == 413
    assert "maximum allowed size" in response.text


def _call_predict_over_http(app_url: str, path: Path) -> tuple[str, object]:
    """The protocol the README's curl example speaks: upload, POST the call, read the SSE result."""
    with httpx.Client(base_url=app_url, timeout=60) as http:
        with path.open("rb") as file:
            [server_path] = http.post("/gradio_api/upload", files={"files": (path.name, file)}).json()
        body = {"data": [{"path": server_path, "meta": {"_type": "gradio.FileData"}}]}
        event_id = http.post("/gradio_api/call/predict", json=body).json()["event_id"]
        stream = http.get(f"/gradio_api/call/predict/{event_id}").text
    # The stream ends with one "event: complete" or "event: error" block.
    event = data = None
    for line in stream.splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
    return event, data


def test_plain_http_protocol(app_url, wide_image, bad_files):
    event, data = _call_predict_over_http(app_url, wide_image)
    assert event == "complete"
    label, overlay, verdict, report = data
    assert set(confidences(label)) == {"real", "ai_generated"}
    assert overlay["url"].startswith(app_url) and verdict.startswith(("Real", "AI-generated", "Uncertain"))

    event, data = _call_predict_over_http(app_url, bad_files["not_image.png"])
    assert event == "error"
    assert "not an image format" in data["error"]
    assert_readable(data["error"])


def test_verdict_wording():
    import app

    def verdict(p: float, label: str) -> str:
        return app.verdict_text(Prediction(p, label, {"real": 1 - p, "ai_generated": p}, 0.5, (0.35, 0.65)))

    assert verdict(0.93, "ai_generated") == "AI-generated (p=0.93, threshold 0.5; uncertain band 0.35–0.65)"
    assert verdict(0.3459, "real") == "Real (p=0.346, threshold 0.5; uncertain band 0.35–0.65)"
    assert verdict(0.52, "uncertain").startswith("Uncertain (p=0.52 is inside the uncertain band 0.35–0.65")
    assert verdict(0.99999, "ai_generated").startswith("AI-generated (p=>0.999,")


@pytest.mark.timeout(400)
def test_missing_model_starts_and_explains(tmp_path, wide_image):
    """`python app.py` with CONVITX_MODEL at an empty folder: the server starts, /predict says what to fix."""
    empty = tmp_path / "no_model_here"
    empty.mkdir()
    port = free_port()
    env = dict(
        os.environ,
        CONVITX_MODEL=str(empty),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
    )
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, f"app.py exited with {server.returncode}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "app.py did not start serving"
            time.sleep(0.5)
        with pytest.raises(AppError) as info:
            Client(url, verbose=False).predict(handle_file(wide_image), api_name="/predict")
        message = str(info.value)
        assert "model is missing" in message and "CONVITX_MODEL" in message and "no_model_here" in message
        assert_readable(message)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.seek(0)
        output = log.read()
        log.close()
    # The operator's log has the full reason the user's message leaves out.
    assert "lacks config.json" in output


# --------------------------------------------------------------------------- evidence report


@pytest.fixture(scope="module")
def signed_png(tmp_path_factory) -> Path:
    from provenance_files import c2pa_sign, encode, make_chain, photo

    path = tmp_path_factory.mktemp("signed") / "chatgpt_image.png"
    path.write_bytes(c2pa_sign(encode(photo(), "PNG"), "image/png", make_chain("OpenAI Test")))
    return path


def test_signed_file_label_equals_verdict_and_report_parses(client, library, signed_png):
    label, overlay, verdict, report = client.predict(handle_file(signed_png), api_name="/predict")
    report = json.loads(json.dumps(report))
    assert report["verdict"] == "ai_generated" and report["decided_by"] == "provenance_markers"
    assert label["label"] == report["verdict"]  # the verdict, never the model's top class
    assert verdict.startswith("AI-generated (decided by the file's own provenance metadata")
    [c2pa] = [e for e in report["evidence"] if e["source"] == "c2pa"]
    assert c2pa["strength"] == "claimed" and c2pa["details"]["signer"]["common_name"] == "OpenAI Test Signer"
    # The model's score is shown beside the provenance.
    expected = library.predict(signed_png, cam=False).p_fake
    assert report["model"]["p_fake"] == pytest.approx(expected, abs=1e-5)
    assert confidences(label)["ai_generated"] == pytest.approx(expected, abs=1e-5)
    assert "Pixel model: p=" in verdict


def test_label_is_the_verdict_for_plain_images(client, wide_image):
    label, _, verdict, report = client.predict(handle_file(wide_image), api_name="/predict")
    assert label["label"] == report["verdict"] and report["decided_by"] == "pixel_model"
    assert verdict.split(" (")[0] == {"real": "Real", "ai_generated": "AI-generated", "uncertain": "Uncertain"}[report["verdict"]]


def test_evidence_markdown_names_signer_and_conflicts():
    import app

    report = {"decided_by": "provenance_markers", "conflicts": ["a <b>conflict</b>"], "evidence": [
        {"kind": "provenance", "source": "c2pa", "signal": "ai_generated", "strength": "claimed", "statement": "says AI",
         "details": {"signer": {"common_name": "Signer <x>", "issuer": "Org"}, "signer_status": "claimed"}}]}
    text = app.evidence_markdown(report)
    assert "C2PA Content Credentials" in text and "Signer &lt;x&gt;" in text and "only claimed" in text
    assert "Conflicts" in text and "&lt;b&gt;" in text
