"""Push a checkpoint folder to the Hugging Face Hub (or any server speaking its protocol)."""
from __future__ import annotations

import sys
from pathlib import Path

from huggingface_hub import HfApi

from detector.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME


class PushError(RuntimeError):
    pass


def push(folder: str | Path, repo_id: str, revision: str | None = None, private: bool = False,
         token: str | None = None, commit_message: str | None = None) -> str:
    """create_repo + upload_folder of config.json, model.safetensors and README.md; returns the commit URL."""
    folder = Path(folder)
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise PushError(f"{folder} lacks {', '.join(missing)}: nothing to push")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=revision,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME],
            commit_message=commit_message or f"Upload ConVitX checkpoint from {folder.name}",
        )
    except Exception as exc:
        retry = f"python -m train push --model {folder} --repo {repo_id}" + (f" --revision {revision}" if revision else "")
        raise PushError(
            f"push to {repo_id} failed ({type(exc).__name__}: {exc}). The checkpoint is intact at {folder.resolve()}; "
            f"retry with: {retry}"
        ) from None
    print(f"pushed {folder} -> {repo_id} ({info.commit_url})", file=sys.stderr)
    return info.commit_url
