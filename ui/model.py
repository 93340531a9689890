"""The model as the app shows it: loaded on first use, the header line, the model card, and what to do
when no model loads."""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import gradio as gr
from huggingface_hub import constants as hf_constants

from detector import Detector
from detector.encoders import FIX_COMMAND
from detector.hub import MODEL_ENV_VAR, EncoderLoadError, is_hub_ref, read_card, split_ref

from .verdict import escape

log = logging.getLogger("convitx.app")

APP_DIR = Path(__file__).resolve().parent.parent  # the checkout: app.py, weights/, examples/
MODEL_RETRY_S = 30.0  # after a failed load, how long requests fail fast before the next attempt


def app_model_ref() -> str:
    """``$CONVITX_MODEL``, else the ``weights/`` folder of this checkout: a Space runs app.py from a
    checkout that was never pip-installed, where the package's embedded default may not exist."""
    return os.environ.get(MODEL_ENV_VAR) or str(APP_DIR / "weights")


class LazyDetector:
    """Load the model on first use, not at import: a Space may start before its weights exist.

    A failed load is retried, at most every ``retry_s`` seconds, so a checkpoint
    that appears later is picked up without a restart and a broken Hub reference
    does not cost every request a network timeout.
    """

    def __init__(self, factory: Callable[[], Detector], ref: str | None = None, retry_s: float = MODEL_RETRY_S):
        self.factory = factory
        self.ref = ref
        self.retry_s = retry_s
        self._detector: Detector | None = None
        self._error: str | None = None
        self._failed_at = -float("inf")
        self._lock = threading.Lock()

    def get(self) -> Detector:
        """The loaded detector, or a gr.Error that tells the user (and the operator) what to fix."""
        with self._lock:
            if self._detector is None:
                if self._error is None or time.monotonic() - self._failed_at >= self.retry_s:
                    self._load()
                if self._detector is None:
                    raise gr.Error(self._error, title="Model not loaded", duration=None, print_exception=False)
            return self._detector

    def _load(self) -> None:
        ref = self.ref or app_model_ref()
        try:
            self._detector = self.factory()
            self._error = None
            log.info("loaded ConVitX model %s from %s", self._detector.config.name, ref)
        except Exception as exc:  # ModelLoadError, but also a torch/OS error from a broken file
            # The full reason (with server paths) goes to the log; the user gets what to do about it.
            log.error("could not load the ConVitX model from %s: %s: %s", ref, type(exc).__name__, exc)
            self._error = (encoder_error_message() if isinstance(exc, EncoderLoadError)
                           else model_error_message(ref, from_env=self.ref is None))
            self._failed_at = time.monotonic()

    @property
    def loaded(self) -> Detector | None:
        return self._detector

    def status(self) -> str:
        """Markdown for the page header: which model answers, or why none does."""
        try:
            detector = self.get()
        except gr.Error as exc:
            return f"**Model:** not loaded. {escape(exc.message)}"
        return model_markdown(detector)


def encoder_error_message() -> str:
    """The checkpoint loaded but its frozen encoder did not: say the one command that fetches it."""
    return (
        "The model's pretrained encoder is missing or damaged, so no image can be judged yet. On the server, run "
        f"`pip install -r requirements.txt` and then `{FIX_COMMAND}`, and restart the app. "
        "The server log has the details."
    )


def model_error_message(ref: str, from_env: bool = True) -> str:
    """What the user sees when no model loads: what is wrong and what the operator should set.

    Names the checkpoint but not the server's folders; the log has the full reason.
    """
    where = f"Hub repo {ref!r}" if is_hub_ref(ref) else f"folder {display_path(ref, short=True)!r}"
    origin = ""
    if from_env:
        origin = f"set by {MODEL_ENV_VAR}" if os.environ.get(MODEL_ENV_VAR) else f"the default; {MODEL_ENV_VAR} is not set"
        origin = f" ({origin})"
    return (
        f"The model is missing: no usable ConVitX checkpoint in the {where}{origin}. "
        "Put a checkpoint there (config.json + model.safetensors), or set "
        f"{MODEL_ENV_VAR} to a checkpoint folder or a Hugging Face repo id (org/name[@revision]) and restart "
        "the app. The server log has the details."
    )


def model_markdown(detector: Detector) -> str:
    """Model name, where its model card lives, and its decision rule in words."""
    config = detector.config
    source = detector.source or "(in memory)"
    if is_hub_ref(source):
        repo_id, revision = split_ref(source)
        url = f"{hf_constants.ENDPOINT}/{repo_id}" + (f"/tree/{revision}" if revision else "")
        card = f"[model card]({url})"
    elif detector.card_path is not None:
        card = f"model card: `{display_path(detector.card_path)}` (below)"
    else:
        card = "no model card"
    return (f"**Model:** `{config.name}` from `{display_path(source)}` · {card} · "
            f"**Verdicts:** {config.decision.describe()}")


def model_card_markdown(detector: Detector | None) -> str:
    """The card's prose (huggingface_hub's ModelCard.text), without its YAML metadata."""
    if detector is None:
        return "No model is loaded."
    path = detector.card_path
    if path is None:
        return "This checkpoint has no model card (README.md)."
    try:
        text = read_card(path.parent).text
    except Exception:  # metadata that is not YAML: show the file as it is rather than nothing
        text = path.read_text(encoding="utf-8", errors="replace")
    return text.strip() or "The model card is empty."


def display_path(path: str | os.PathLike, short: bool = False) -> str:
    """Paths inside the checkout relative to it; with ``short``, others by their last part only."""
    try:
        return str(Path(path).resolve().relative_to(APP_DIR))
    except ValueError:
        return Path(path).name if short else str(path)


def strip_dir(message: str, path: str) -> str:
    """Belt and braces: never echo the upload's server-side directory, only its file name."""
    folder = str(Path(path).parent)
    return message.replace(folder + os.sep, "").replace(folder, "")
