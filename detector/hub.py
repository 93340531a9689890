"""Checkpoints on disk and on the Hugging Face Hub, in one layout.

A checkpoint is a folder (or Hub repo) holding ``config.json``,
``model.safetensors`` and a ``README.md`` model card. ``save_checkpoint`` also
writes ``preprocessor_config.json`` (the preprocessing again, generated from
``config.json``, for transformers' ``AutoImageProcessor``: see
``detector/transformers_interop.py``); ConVitX itself never reads it. Hub access goes through
huggingface_hub, so its cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and
``HF_TOKEN`` all apply. Weights are read with safetensors only: a pickled
``.bin`` is never downloaded, let alone unpickled.

References (``ref``), as timm and open_clip spell them:

- ``hf-hub:org/name[@revision]`` always means the Hub, even if a local folder
  ``org/name`` exists.
- ``org/name[@revision]`` without the prefix means the Hub only when no local
  path of that name exists: an existing local folder wins.
- anything else is a local folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import safetensors.torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, ModelCardData, constants, snapshot_download

from .config import ConVitXConfig
from .encoders import EncoderUnavailableError, load_encoder_state
from .model import ConVitX

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
PREPROCESSOR_NAME = "preprocessor_config.json"  # transformers' AutoImageProcessor reads it; ConVitX does not
IMAGE_PROCESSOR_TYPE = "ConVitXImageProcessor"
CHECKPOINT_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]  # what a load downloads
HUB_PREFIX = "hf-hub:"
MODEL_ENV_VAR = "CONVITX_MODEL"
DISTRIBUTION = "convitx"  # the name pyproject.toml installs this package under
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(RuntimeError):
    """A model reference could not be resolved or loaded; the message names what was tried."""


class EncoderLoadError(ModelLoadError):
    """The checkpoint is fine but a frozen encoder it names by reference could not be had (see detector.encoders)."""


class PushError(RuntimeError):
    """An upload failed; the local checkpoint is untouched."""


def embedded_weights() -> Path | None:
    """The embedded default checkpoint, found without guessing at folders outside the package.

    An installed wheel carries it as package data, ``detector/weights/`` (pyproject.toml maps the
    repository's ``weights/`` there at build time). An editable install (``pip install -e .``) has
    no copy: its installer record (PEP 610 ``direct_url.json``) names the source checkout, whose
    ``weights/`` is used, but only if this ``detector`` is that checkout's. Anything else (a bare
    checkout that was never installed): None, and the caller must name a checkpoint.
    """
    package = Path(__file__).resolve().parent
    if (package / "weights" / CONFIG_NAME).is_file():
        return package / "weights"
    try:
        record = json.loads(metadata.distribution(DISTRIBUTION).read_text("direct_url.json") or "{}")
    except metadata.PackageNotFoundError:
        return None
    if not record.get("dir_info", {}).get("editable") or not record.get("url", "").startswith("file:"):
        return None
    source = Path(unquote(urlsplit(record["url"]).path)).resolve()
    if (source / "detector") != package or not (source / "weights" / CONFIG_NAME).is_file():
        return None
    return source / "weights"


EMBEDDED_WEIGHTS = embedded_weights()


def default_model_ref() -> str:
    """``$CONVITX_MODEL``, else the embedded default; ModelLoadError if neither exists."""
    if os.environ.get(MODEL_ENV_VAR):
        return os.environ[MODEL_ENV_VAR]
    if EMBEDDED_WEIGHTS is None:
        raise ModelLoadError(
            f"no model given, {MODEL_ENV_VAR} is not set, and this copy of the detector package has no "
            "embedded weights (it was not installed from the project: `pip install .` or `pip install -e .`). "
            f"Pass a checkpoint folder or hf-hub:org/name[@revision], or set {MODEL_ENV_VAR}."
        )
    return str(EMBEDDED_WEIGHTS)


def split_ref(ref: str, revision: str | None = None) -> tuple[str, str | None]:
    """``[hf-hub:]org/name@rev`` -> (``org/name``, ``rev``); an explicit ``revision`` wins."""
    text = str(ref)
    if text.startswith(HUB_PREFIX):
        text = text[len(HUB_PREFIX):]
    repo_id, _, pinned = text.partition("@")
    return repo_id, revision or pinned or None


def is_hub_ref(ref: str | os.PathLike) -> bool:
    """``hf-hub:org/name[@rev]``; or ``org/name[@rev]`` when no local path of that name exists."""
    text = str(ref)
    if text.startswith(HUB_PREFIX):
        return True
    return bool(_HUB_ID.match(split_ref(text)[0])) and not Path(text).expanduser().exists()


def resolve_checkpoint(
    ref: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Return a local folder holding the checkpoint, downloading from the Hub if ``ref`` names a repo."""
    text = str(ref).strip()
    if not text:
        raise ModelLoadError("empty model reference: give a checkpoint folder or hf-hub:org/name[@revision]")
    if not is_hub_ref(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise ModelLoadError(
                f"model {str(ref)!r}: no folder at {path.resolve()}, and not a Hub repo id "
                "(hf-hub:org/name[@revision] or org/name[@revision])"
            )
        _check_folder(path, f"model folder {path.resolve()}")
        return path
    repo_id, revision = split_ref(text, revision)
    if not _HUB_ID.match(repo_id):
        raise ModelLoadError(f"model {str(ref)!r}: {repo_id!r} is not a Hub repo id (hf-hub:org/name[@revision])")
    where = f"Hub repo {repo_id} at revision {revision or 'main'} ({constants.ENDPOINT}"
    where += ", offline cache only)" if constants.HF_HUB_OFFLINE else ")"
    try:
        # One call: it resolves the revision to a commit once and fetches every file at that
        # commit, so a push landing mid-download cannot pair one commit's config with
        # another's weights. allow_patterns keeps pickled .bin files (and anything else) out.
        folder = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=CHECKPOINT_FILES,
                              cache_dir=cache_dir, token=token)
        )
    except Exception as exc:  # network, auth, missing repo/revision, offline cache miss
        local = "" if text.startswith(HUB_PREFIX) else f"no folder at {Path(text).expanduser().resolve()}; "
        raise ModelLoadError(
            f"model {str(ref)!r}: {local}{where} failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    _check_folder(folder, where)
    return folder


def _check_folder(folder: Path, where: str) -> None:
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise ModelLoadError(
            f"{where} lacks {', '.join(missing)}: a ConVitX checkpoint holds {CONFIG_NAME} + {WEIGHTS_NAME} "
            f"(+ {CARD_NAME}); ConVitX loads safetensors only, never pickled .bin files"
        )


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
        load_trained_weights(model, folder / WEIGHTS_NAME)
    except Exception as exc:
        raise ModelLoadError(
            f"{folder / WEIGHTS_NAME} does not match {folder / CONFIG_NAME} ({config.name}): {_first_line(exc, 400)}"
        ) from None
    load_referenced_encoders(model)
    model.eval()
    return model, config, folder


def referenced_prefixes(model: ConVitX) -> list[str]:
    """State-dict prefixes of the frozen backbones named by reference (not stored in model.safetensors)."""
    return [f"branches.{b.name}.backbone." for b in model.config.branches if b.weights]


def trained_state_dict(model: ConVitX) -> dict:
    """What a checkpoint stores: everything but the referenced encoders (tensors made contiguous, no sharing)."""
    prefixes = tuple(referenced_prefixes(model))
    return {k: v.detach().float().contiguous() if v.is_floating_point() else v.detach().contiguous()
            for k, v in model.state_dict().items() if not (prefixes and k.startswith(prefixes))}


def load_trained_weights(model: ConVitX, path: str | os.PathLike) -> None:
    """Strict for everything the checkpoint must hold; the referenced encoders are loaded separately."""
    prefixes = tuple(referenced_prefixes(model))
    # load_state_dict (not a key comparison up front) so the model's own key hooks (0.1 names) apply.
    result = model.load_state_dict(safetensors.torch.load_file(str(path)), strict=False)
    missing = sorted(k for k in result.missing_keys if not (prefixes and k.startswith(prefixes)))
    if missing or result.unexpected_keys:
        raise ValueError(f"missing keys {missing[:8]}, unexpected keys {sorted(result.unexpected_keys)[:8]}")


def load_referenced_encoders(model: ConVitX) -> None:
    """Fill each frozen branch named by reference from the cache, the Hub or its wheel (``detector.encoders``)."""
    for branch in model.config.branches:
        if not branch.weights:
            continue
        try:
            state = load_encoder_state(branch.weights)
        except EncoderUnavailableError as exc:
            raise EncoderLoadError(f"branch {branch.name!r} ({branch.model}): {exc}") from None
        model.branches[branch.name].backbone.load_state_dict(state, strict=True)


CARD_METADATA = dict(
    library_name="convitx",
    pipeline_tag="image-classification",
    tags=["ai-image-detection", "convnext", "swin", "timm", "grad-cam"],
    license="apache-2.0",
)


def model_card(text: str, **metadata) -> ModelCard:
    """A card from its Markdown ``text``; the YAML header (CARD_METADATA, updated by ``metadata``)
    is written by huggingface_hub, so it always parses on the Hub."""
    card = ModelCard(text)
    card.data = ModelCardData(**{**CARD_METADATA, **metadata})
    return card


def read_card(folder: str | os.PathLike) -> ModelCard | None:
    """The folder's README.md as a ModelCard (``.text`` is the prose, ``.data`` the metadata); None if absent."""
    path = Path(folder) / CARD_NAME
    return ModelCard.load(path, ignore_metadata_errors=True) if path.is_file() else None


def save_checkpoint(model: ConVitX, folder: str | os.PathLike, card: str | ModelCard | None = None) -> Path:
    """Write the Hub layout; each file lands atomically (a kill never leaves half a file).
    ``card`` as a string is written verbatim; build one with ``model_card`` to get the Hub metadata."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _atomic(folder / WEIGHTS_NAME) as tmp:
        safetensors.torch.save_file(trained_state_dict(model), tmp, metadata={"format": "pt", "convitx": model.config.name})
    with _atomic(folder / CONFIG_NAME) as tmp:
        model.config.save(tmp)
    with _atomic(folder / PREPROCESSOR_NAME) as tmp:
        preprocess = {"image_processor_type": IMAGE_PROCESSOR_TYPE, **dataclasses.asdict(model.config.preprocess)}
        Path(tmp).write_text(json.dumps(preprocess, indent=2, sort_keys=True) + "\n")
    if card is not None:
        with _atomic(folder / CARD_NAME) as tmp:
            Path(tmp).write_text(str(card), encoding="utf-8")
    return folder


def push_to_hub(
    folder_or_model: str | os.PathLike | ConVitX,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    card: str | ModelCard | None = None,
    token: str | bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Upload a checkpoint as ONE commit of config.json, model.safetensors and README.md; returns its URL.

    ``folder_or_model``: a checkpoint folder, or a model (saved to a temporary folder first).
    ``card`` replaces the folder's README.md in the upload (the folder itself is not changed).
    Creates the repo (and the ``revision`` branch, from main) if needed. Raises PushError, leaving
    the local checkpoint intact.
    """
    repo_id = split_ref(str(repo_id))[0]
    if isinstance(folder_or_model, ConVitX):
        with tempfile.TemporaryDirectory(prefix="convitx-push-") as tmp:
            folder = save_checkpoint(folder_or_model, tmp, card=card)
            return push_to_hub(folder, repo_id, revision, private, None, token, commit_message, endpoint)
    folder = Path(folder_or_model)
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise PushError(f"{folder} lacks {', '.join(missing)}: nothing to push")
    names = [CONFIG_NAME, WEIGHTS_NAME] + ([PREPROCESSOR_NAME] if (folder / PREPROCESSOR_NAME).is_file() else [])
    operations = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(folder / n)) for n in names]
    if card is not None:
        operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=str(card).encode("utf-8")))
    elif (folder / CARD_NAME).is_file():
        operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=str(folder / CARD_NAME)))
    api = HfApi(endpoint=endpoint, token=token)  # endpoint None: $HF_ENDPOINT, else the Hub
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(
            repo_id, operations, revision=revision,
            commit_message=commit_message or f"Upload ConVitX checkpoint from {folder.name}",
        )
    except Exception as exc:
        raise PushError(
            f"push to {repo_id} failed ({type(exc).__name__}: {_first_line(exc)}). "
            f"The checkpoint is intact at {folder.resolve()}"
        ) from None
    return info.commit_url


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
