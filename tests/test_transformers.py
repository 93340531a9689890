"""transformers' image-classification pipeline on a ConVitX checkpoint: no remote code, Detector's numbers.

Real components only: transformers loads a tiny checkpoint saved by ``save_checkpoint`` from a folder,
and from the Hub-protocol server of tests/hubserver.py after a real ``push_to_hub`` (in a subprocess,
with HF_ENDPOINT in its environment, as huggingface_hub reads it once at import).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from detector import ConVitXConfig, Detector, load_checkpoint, push_to_hub, save_checkpoint  # noqa: E402
from detector.hub import PREPROCESSOR_NAME  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)
SIZES = [(70, 50), (130, 200), (300, 300)]  # fewer, as many as, and more tiles than the cap would allow


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    paths = []
    for i, (width, height) in enumerate(SIZES):
        paths.append(folder / f"noise{i}.png")
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def tempered(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with temperature 4 and a moved threshold: the pipeline must apply them as Detector does."""
    model, config, _ = load_checkpoint(tiny_checkpoint)
    model.config = dataclasses.replace(config, decision=dataclasses.replace(config.decision, temperature=4.0))
    return save_checkpoint(model, tmp_path_factory.mktemp("tempered"), card="# tempered test checkpoint")


def detector_scores(folder: Path, images: list[Path]) -> list[float]:
    """Detector's P(ai_generated) and P(real), image by image, flattened."""
    detector = Detector.from_pretrained(folder, device="cpu")
    return [score for path in images for score in _pair(detector.predict(path, cam=False).probabilities)]


def _pair(scores: dict[str, float]) -> tuple[float, float]:
    assert set(scores) == {"real", "ai_generated"}, scores
    return scores["ai_generated"], scores["real"]


def flat(results: list[list[dict]]) -> list[float]:
    """The pipeline's results for several images, as ``detector_scores`` lays them out."""
    return [score for result in results for score in _pair({r["label"]: r["score"] for r in result})]


def test_checkpoints_name_their_transformers_type_and_old_ones_still_load(tiny_checkpoint, tmp_path):
    saved = json.loads((tiny_checkpoint / "config.json").read_text())
    assert saved["model_type"] == "convitx"
    preprocessor = json.loads((tiny_checkpoint / PREPROCESSOR_NAME).read_text())
    assert preprocessor.pop("image_processor_type") == "ConVitXImageProcessor"
    assert preprocessor == json.loads(json.dumps(saved["preprocess"]))  # generated from config.json, never apart

    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "model_type"}))
    (old / "model.safetensors").write_bytes((tiny_checkpoint / "model.safetensors").read_bytes())
    assert load_checkpoint(old)[1] == ConVitXConfig.from_dict(saved)  # a checkpoint from before model_type
    with pytest.raises(ValueError, match="not a ConVitX config"):
        ConVitXConfig.from_dict({**saved, "model_type": "vit"})


def test_pipeline_from_a_folder_matches_detector(tiny_checkpoint, tempered, images):
    import detector  # noqa: F401  (registers ConVitX with the Auto classes)
    from transformers import pipeline

    expected = detector_scores(tempered, images)
    classify = pipeline("image-classification", model=str(tempered), device="cpu")
    assert type(classify.model).__name__ == "ConVitXForImageClassification"
    one_by_one = flat([classify(str(path)) for path in images])
    assert one_by_one == pytest.approx(expected, abs=1e-9)
    batched = flat(classify([str(p) for p in images], batch_size=3))  # the tiles of 3 images in one forward
    assert batched == pytest.approx(expected, abs=1e-6)

    # The temperature is applied: the same weights at temperature 1 give other scores.
    untempered = flat(pipeline("image-classification", model=str(tiny_checkpoint))([str(p) for p in images]))
    assert untempered == pytest.approx(detector_scores(tiny_checkpoint, images), abs=1e-9)
    assert all(abs(a - b) > 1e-4 for a, b in zip(untempered, one_by_one))


PIPELINE_FROM_HUB = r"""
import json, sys
import detector
from transformers import pipeline
repo, revision, images = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
classify = pipeline("image-classification", model=repo, revision=revision, device="cpu")
print(json.dumps([classify(path) for path in images]))
"""


def test_pipeline_from_the_hub_matches_detector(tempered, tiny_checkpoint, images, hub_server, tmp_path):
    token = hub_server.token = "hf_test_write_token"
    push_to_hub(tempered, "org/convitx-hf", token=token, endpoint=hub_server.endpoint)
    pinned = hub_server.resolve("org/convitx-hf", "main")
    push_to_hub(tiny_checkpoint, "org/convitx-hf", token=token, endpoint=hub_server.endpoint)  # main moves on
    assert PREPROCESSOR_NAME in hub_server.files("org/convitx-hf", pinned)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(PYTHONPATH=str(REPO_ROOT), HF_ENDPOINT=hub_server.endpoint, HF_HOME=str(tmp_path / "hf_home"),
               HF_TOKEN=token, HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               OMP_NUM_THREADS=str(torch.get_num_threads()))  # same thread count: same float results
    proc = subprocess.run(
        [sys.executable, "-c", PIPELINE_FROM_HUB, "org/convitx-hf", pinned, json.dumps([str(p) for p in images])],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = flat(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert got == pytest.approx(detector_scores(tempered, images), abs=1e-9)  # the pinned commit, not main
    fetched = {path for method, path in hub_server.requests if method == "GET" and "/resolve/" in path}
    assert not any(path.endswith((".bin", ".py")) for path in fetched), fetched  # no pickles, no remote code
