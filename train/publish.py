"""``python -m train push``: upload a trained checkpoint folder with the library's ``push_to_hub``.

Training only supplies the card's content (``train/card.py``, written into the
folder's README.md by ``fit``/``evaluate`` and uploaded verbatim) and the retry
hint; the upload itself is ``detector.hub.push_to_hub``, so the library and
training push the same way.
"""
from __future__ import annotations

import sys
from pathlib import Path

from detector.hub import PushError, push_to_hub

__all__ = ["PushError", "push"]


def push(folder: str | Path, repo_id: str, revision: str | None = None, private: bool = False,
         token: str | None = None, commit_message: str | None = None) -> str:
    """Push ``folder`` (config, weights and its model card) to ``repo_id``; returns the commit URL."""
    folder = Path(folder)
    try:
        url = push_to_hub(folder, repo_id, revision=revision, private=private, token=token,
                          commit_message=commit_message)
    except PushError as exc:
        retry = f"python -m train push --model {folder} --repo {repo_id}" + (f" --revision {revision}" if revision else "")
        raise PushError(f"{exc}; retry with: {retry}") from None
    print(f"pushed {folder} -> {repo_id} ({url})", file=sys.stderr)
    return url
