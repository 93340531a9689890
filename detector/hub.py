"""Checkpoints on disk and on the Hugging Face Hub, in one layout.

A checkpoint is a folder (or Hub repo) holding ``config.json``,
``model.safetensors`` and a ``README.md`` model card. Hub access goes through
huggingface_hub, so its cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and
``HF_TOKEN`` all apply. Weights are read with safetensors only: a pickled
``.bin`` is never downloaded, let alone unpickled.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import safetensors.torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import RemoteEntryNotFoundError

from .config import ConVitXConfig
from .model import ConVitX

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
EMBEDDED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
MODEL_ENV_VAR = "CONVITX_MODEL"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(RuntimeError):
    """A model reference could not be resolved or loaded; the message names what was tried."""


def default_model_ref() -> str:
    return os.environ.get(MODEL_ENV_VAR) or str(EMBEDDED_WEIGHTS)


def is_hub_ref(ref: str | os.PathLike) -> bool:
    """``org/name[@revision]`` that is not an existing local path."""
    repo_id, _ = split_ref(str(ref))
    return bool(_HUB_ID.match(repo_id)) and not Path(ref).expanduser().exists()


def split_ref(ref: str, revision: str | None = None) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``); an explicit ``revision`` wins."""
    repo_id, _, pinned = str(ref).partition("@")
    return repo_id, revision or pinned or None


def resolve_checkpoint(
    ref: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Return a local folder holding the checkpoint, downloading from the Hub if needed."""
    if not str(ref).strip():
        raise ModelLoadError("empty model reference: give a checkpoint folder or org/name[@revision]")
    path = Path(ref).expanduser()
    if path.is_dir():
        missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (path / n).is_file()]
        if missing:
            raise ModelLoadError(
                f"model folder {path.resolve()} lacks {', '.join(missing)}: a ConVitX checkpoint "
                f"holds {CONFIG_NAME} + {WEIGHTS_NAME} (+ {CARD_NAME})"
            )
        return path
    repo_id, revision = split_ref(str(ref), revision)
    if not _HUB_ID.match(repo_id):
        raise ModelLoadError(
            f"model {str(ref)!r}: no folder at {path.resolve()}, and not a Hub repo id (org/name[@revision])"
        )
    where = f"Hub repo {repo_id} at revision {revision or 'main'} ({constants.ENDPOINT}"
    where += ", offline cache only)" if constants.HF_HUB_OFFLINE else ")"
    kwargs = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir, token=token)
    filename = CONFIG_NAME
    try:
        config_file = hf_hub_download(filename=filename, **kwargs)
        # Pin the rest to the commit config.json came from: a push landing between
        # the two downloads must not pair one commit's config with another's weights.
        kwargs["revision"] = Path(config_file).parent.name
        filename = WEIGHTS_NAME
        hf_hub_download(filename=filename, **kwargs)
    except RemoteEntryNotFoundError as exc:
        raise ModelLoadError(
            f"model {str(ref)!r}: {where} has no {filename} "
            f"(ConVitX loads safetensors only, never pickled .bin files): {_first_line(exc)}"
        ) from None
    except Exception as exc:  # network, auth, missing repo/revision, offline cache miss
        raise ModelLoadError(
            f"model {str(ref)!r}: no folder at {path.resolve()}; {where} failed: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from None
    try:
        hf_hub_download(filename=CARD_NAME, **kwargs)
    except Exception:
        pass  # the card is documentation, not needed to predict
    return Path(config_file).parent


def load_checkpoint(
    ref: str | os.PathLike, revision: str | None = None, **hub_kwargs
) -> tuple[ConVitX, ConVitXConfig, Path]:
    folder = resolve_checkpoint(ref, revision=revision, **hub_kwargs)
    try:
        config = ConVitXConfig.load(folder / CONFIG_NAME)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{folder / CONFIG_NAME} is not a valid ConVitX config: {exc}") from None
    model = ConVitX(config)
    try:
        safetensors.torch.load_model(model, folder / WEIGHTS_NAME, strict=True)
    except Exception as exc:
        raise ModelLoadError(
            f"{folder / WEIGHTS_NAME} does not match {folder / CONFIG_NAME} ({config.name}): {_first_line(exc, 400)}"
        ) from None
    model.eval()
    return model, config, folder


def save_checkpoint(model: ConVitX, folder: str | os.PathLike, card: str | None = None) -> Path:
    """Write the Hub layout; each file lands atomically (a kill never leaves half a file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _atomic(folder / WEIGHTS_NAME) as tmp:
        safetensors.torch.save_model(model, tmp, metadata={"format": "pt", "convitx": model.config.name})
    with _atomic(folder / CONFIG_NAME) as tmp:
        model.config.save(tmp)
    if card is not None:
        with _atomic(folder / CARD_NAME) as tmp:
            Path(tmp).write_text(card)
    return folder


class _atomic:
    """Write to a temp file in the same folder, then rename over the target."""

    def __init__(self, target: Path):
        self.target = target

    def __enter__(self) -> str:
        fd, self.tmp = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(self.tmp, 0o644)  # mkstemp's 0600 would make a shared checkpoint unreadable
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.target)
        elif os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."
