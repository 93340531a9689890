"""A small in-memory Hugging Face Hub, for tests: stdlib only, model repos (+ read-only dataset repos).

It speaks the slice of the Hub HTTP protocol that huggingface_hub 2.4 uses to
download (``hf_hub_download``, ``snapshot_download``, ``model_info``) and to
upload (``create_repo``, ``create_branch``, ``create_tag``, ``upload_folder``,
``create_commit``), so the library's real loading code can run against it
unchanged with ``HF_ENDPOINT=server.endpoint``.

Repos live in memory::

    {repo_id: {"private": bool,
               "refs": {"main": sha, "v1": sha, ...},   # branches and tags
               "tags": {"v1", ...},                      # which refs are tags
               "commits": {sha: {path: bytes}}}}         # full tree per commit

What the real Hub does and this server does not (see the README):
no LFS or Xet storage (every upload is answered ``uploadMode: "regular"`` and
every file is served as a plain git blob, ETag = git blob sha1, with no
redirect to a CDN), no Range requests, no pull requests, no space repos
(dataset repos are download-only), no short commit shas, no user namespaces (repo ids are ``org/name``),
one optional bearer token instead of real accounts and scopes, no gated repos,
no rate limits, no pagination of tree listings.

Usage::

    with HubServer() as hub:
        sha = hub.seed("org/name", "path/to/checkpoint")
        hub.tag("org/name", "v1", sha)
        # HF_ENDPOINT=hub.endpoint python -c "hf_hub_download('org/name', 'config.json')"

Dataset repos (read-only, for ``datasets.load_dataset("org/data")``) are held under the
key ``"datasets/org/data"``: ``hub.seed("datasets/org/data", folder)``; the server answers
``/api/datasets/org/data[/revision/REV]``, ``.../tree/REV[/PATH]`` and
``/datasets/org/data/resolve/REV/PATH``.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_DATASET = r"(?P<repo>datasets/[^/]+/[^/]+)"  # a dataset repo's key in HubServer.repos
_REV = r"(?P<rev>[^/]+)"  # URL-quoted by huggingface_hub, so a "/" in a branch name arrives as %2F
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    """The id git (and the Hub's ETag for non-LFS files) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    """An error answer, with the X-Error-Code header huggingface_hub maps to its exceptions."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubServer:
    """Start with ``with HubServer() as hub`` (or ``start()``/``stop()``); ``hub.endpoint`` is its URL."""

    def __init__(self, token: str | None = None, host: str = "127.0.0.1", port: int = 0):
        # If set (now or later, it is read per request): required for writes and for private repos,
        # and a request carrying a different bearer token gets a 401, as the Hub answers a bad token.
        self.token = token
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, unquoted path) of every request, in order
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port (later connections are refused)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for tests ------------------------------------------------------------------

    def create_repo(self, repo_id: str, private: bool = False, initial_files: dict[str, bytes] | None = None) -> None:
        with self._lock:
            if repo_id in self.repos:
                raise HubError(409, f"You already created this model repo: {repo_id}")
            self.repos[repo_id] = {"private": private, "refs": {}, "tags": set(), "commits": {}}
            if initial_files is not None:
                self.commit(repo_id, initial_files, message="initial commit")

    def seed(self, repo_id: str, folder: str | Path, branch: str = "main", message: str | None = None) -> str:
        """Commit every file under ``folder`` to ``branch`` (creating the repo if needed); return the commit sha.

        The new commit holds exactly the folder's files: nothing is kept from the branch's previous commit.
        A branch that does not exist yet is created.
        """
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        with self._lock:
            if repo_id not in self.repos:
                self.create_repo(repo_id)
            return self.commit(repo_id, files, branch=branch, message=message or f"seed from {folder.name}", replace=True)

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        branch: str = "main",
        message: str = "commit",
        deleted: tuple[str, ...] = (),
        replace: bool = False,
    ) -> str:
        """Add ``files`` (and remove ``deleted`` paths/folders) on top of ``branch``; move the branch; return the sha."""
        with self._lock:
            repo = self._repo(repo_id)
            if branch in repo["tags"]:
                raise HubError(400, f"cannot commit to tag {branch!r}: commits go to branches")
            parent = repo["refs"].get(branch)
            if parent is None and repo["refs"] and not replace:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            tree = {} if replace or parent is None else dict(repo["commits"][parent])
            for gone in deleted:
                gone = gone.rstrip("/")
                tree = {p: d for p, d in tree.items() if p != gone and not p.startswith(gone + "/")}
            tree.update(files)
            fingerprint = json.dumps(
                [parent, message, next(self._counter), sorted((p, git_blob_sha1(d)) for p, d in tree.items())]
            )
            sha = hashlib.sha1(fingerprint.encode()).hexdigest()
            repo["commits"][sha] = tree
            repo["refs"][branch] = sha
            return sha

    def tag(self, repo_id: str, tag: str, revision: str) -> str:
        """Point tag ``tag`` at ``revision`` (a sha, branch or tag); return the sha."""
        with self._lock:
            repo = self._repo(repo_id)
            if tag in repo["refs"]:
                raise HubError(409, f"Tag {tag} already exists")
            sha = self.resolve(repo_id, revision)
            repo["refs"][tag] = sha
            repo["tags"].add(tag)
            return sha

    def branch(self, repo_id: str, branch: str, revision: str = "main") -> str:
        with self._lock:
            repo = self._repo(repo_id)
            if branch in repo["refs"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            sha = repo["refs"][branch] = self.resolve(repo_id, revision)
            return sha

    def resolve(self, repo_id: str, revision: str | None = None) -> str:
        """Branch, tag or full 40-hex commit sha -> commit sha (HubError RevisionNotFound otherwise)."""
        with self._lock:
            repo = self._repo(repo_id)
            revision = revision or "main"
            if revision in repo["refs"]:
                return repo["refs"][revision]
            if SHA_RE.match(revision) and revision in repo["commits"]:
                return revision
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            return dict(self._repo(repo_id)["commits"][self.resolve(repo_id, revision)])

    def _repo(self, repo_id: str) -> dict:
        try:
            return self.repos[repo_id]
        except KeyError:
            raise HubError(404, "Repository not found", "RepoNotFound") from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer carries Content-Length
    server_version = "hubserver/1"

    ROUTES = [
        ("HEAD", rf"^/{_REPO}/resolve/{_REV}/(?P<path>.+)$", "resolve"),
        ("GET", rf"^/{_REPO}/resolve/{_REV}/(?P<path>.+)$", "resolve"),
        ("GET", rf"^/api/models/{_REPO}(?:/revision/{_REV})?$", "model_info"),
        ("GET", rf"^/api/models/{_REPO}/tree/{_REV}(?:/(?P<path>.*))?$", "tree"),
        ("POST", r"^/api/repos/create$", "create_repo"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml"),
        ("POST", rf"^/api/models/{_REPO}/preupload/{_REV}$", "preupload"),
        ("POST", rf"^/api/models/{_REPO}/commit/{_REV}$", "commit"),
        ("POST", rf"^/api/models/{_REPO}/branch/{_REV}$", "create_branch"),
        ("POST", rf"^/api/models/{_REPO}/tag/{_REV}$", "create_tag"),
        # Dataset repos, read-only: held under the key "datasets/org/name" (seed them with that id),
        # so the download handlers above serve them unchanged.
        ("HEAD", rf"^/{_DATASET}/resolve/{_REV}/(?P<path>.+)$", "resolve"),
        ("GET", rf"^/{_DATASET}/resolve/{_REV}/(?P<path>.+)$", "resolve"),
        ("GET", rf"^/api/{_DATASET}(?:/revision/{_REV})?$", "dataset_info"),
        ("GET", rf"^/api/{_DATASET}/tree/{_REV}(?:/(?P<path>.*))?$", "tree"),
    ]

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def log_message(self, format, *args) -> None:  # quiet: the request log is hub.requests
        pass

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.hub.requests.append((method, unquote(url.path)))
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._read_body()
        try:
            self._check_token()
            for route_method, pattern, name in self.ROUTES:
                match = re.match(pattern, url.path)
                if route_method == method and match:
                    args = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
                    return getattr(self, name)(body=body, head=method == "HEAD", **args)
            raise HubError(404, f"no route for {method} {url.path} on this test Hub")
        except Exception as exc:  # a bug here should reach the client as a 500, not a dropped connection
            err = exc if isinstance(exc, HubError) else HubError(500, f"{type(exc).__name__}: {exc}")
            headers = {"X-Error-Message": " ".join(err.message.split()), **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head=method == "HEAD")

    # -- auth ---------------------------------------------------------------------------------

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    def _check_token(self) -> None:
        given = self._bearer()
        if self.hub.token is not None and given is not None and given != self.hub.token:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _authorized(self) -> bool:
        return self.hub.token is None or self._bearer() == self.hub.token

    def _readable_repo(self, repo_id: str) -> dict:
        repo = self.hub._repo(repo_id)
        if repo["private"] and not self._authorized():
            raise HubError(401, "Repository not found", "RepoNotFound")  # the Hub hides private repos
        return repo

    def _writable_repo(self, repo_id: str) -> dict:
        if not self._authorized():
            raise HubError(401, "You must be authenticated to write to this repo")
        return self.hub._repo(repo_id)

    # -- downloads ----------------------------------------------------------------------------

    def resolve(self, repo: str, rev: str, path: str, head: bool, **_) -> None:
        self._readable_repo(repo)
        sha = self.hub.resolve(repo, rev)
        tree = self.hub.repos[repo]["commits"][sha]
        if path not in tree:
            # X-Repo-Commit lets huggingface_hub cache the file's absence for this commit (.no_exist/).
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        data = tree[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_sha1(data)}"',
            "X-Repo-Commit": sha,
            "Accept-Ranges": "none",
        }
        self._send(200, data, headers, head=head)

    def _repo_info(self, repo: str, rev: str | None, repo_id: str, **extra) -> None:
        """The /api/{models,datasets}/... answer: identity, commit and file list."""
        repo_state = self._readable_repo(repo)
        sha = self.hub.resolve(repo, rev)
        tree = repo_state["commits"][sha]
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        self._send_json(
            {
                "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
                "id": repo_id,
                **extra,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": repo_state["private"],
                "gated": False,
                "disabled": False,
                "lastModified": now,
                "createdAt": now,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [
                    {"rfilename": p, "size": len(d), "blobId": git_blob_sha1(d)} for p, d in sorted(tree.items())
                ],
            }
        )

    def model_info(self, repo: str, rev: str | None, **_) -> None:
        self._repo_info(repo, rev, repo, modelId=repo)

    def tree(self, repo: str, rev: str, path: str | None, **_) -> None:
        self._readable_repo(repo)
        tree = self.hub.repos[repo]["commits"][self.hub.resolve(repo, rev)]
        prefix = f"{path.strip('/')}/" if path else ""
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        entries, folders = [], set()
        for file_path, data in sorted(tree.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :].split("/")
            for depth in range(1, len(rest) if recursive else min(2, len(rest))):
                folders.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                entries.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": file_path})
        if path and not entries and not folders:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        entries += [{"type": "directory", "oid": git_blob_sha1(f.encode()), "size": 0, "path": f} for f in folders]
        self._send_json(sorted(entries, key=lambda e: e["path"]))

    def dataset_info(self, repo: str, rev: str | None, **_) -> None:
        self._repo_info(repo, rev, repo[len("datasets/") :])

    # -- uploads ------------------------------------------------------------------------------

    def create_repo(self, body: bytes, **_) -> None:
        if not self._authorized():
            raise HubError(401, "You must be authenticated to create a repo")
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") != "model":
            raise HubError(400, "this test Hub holds model repos only")
        if not payload.get("organization"):
            raise HubError(400, "this test Hub has no user namespaces: create org/name")
        repo_id = f"{payload['organization']}/{payload['name']}"
        private = payload.get("private") or payload.get("visibility") == "private"
        url = f"{self.hub.endpoint}/{repo_id}"
        try:  # the real Hub starts every repo with a .gitattributes commit
            self.hub.create_repo(repo_id, private=bool(private), initial_files={".gitattributes": GITATTRIBUTES})
        except HubError as err:
            self._send(409, json.dumps({"error": err.message, "url": url}).encode(), {"X-Error-Message": err.message})
            return
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self, **_) -> None:
        self._send_json({"errors": [], "warnings": []})  # model cards are not checked

    def preupload(self, repo: str, rev: str, body: bytes, **_) -> None:
        repo_state = self._writable_repo(repo)
        self._no_pull_requests()
        tree = repo_state["commits"][self.hub.resolve(repo, rev)]
        files = json.loads(body)["files"]
        # "regular" for every file: content then travels base64-encoded inside the commit call,
        # so no LFS batch API and no Xet storage are needed.
        answer = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha1(tree[f["path"]]) if f["path"] in tree else None,
            }
            for f in files
        ]
        self._send_json({"files": answer, "commitOid": self.hub.resolve(repo, rev)})

    def commit(self, repo: str, rev: str, body: bytes, **_) -> None:
        repo_state = self._writable_repo(repo)
        self._no_pull_requests()
        header, added, deleted = {}, {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                added[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:  # lfsFile: this server never asks for LFS uploads, so it holds no LFS objects
                raise HubError(400, f"this test Hub does not store LFS/Xet files (got {key!r})")
        with self.hub._lock:
            if rev not in repo_state["refs"] or rev in repo_state["tags"]:
                raise HubError(404, f"Invalid rev id: {rev} (commits go to existing branches)", "RevisionNotFound")
            parent = header.get("parentCommit")
            if parent and parent != repo_state["refs"][rev]:
                raise HubError(412, f"A commit has happened since {parent}: {rev} is at {repo_state['refs'][rev]}")
            sha = self.hub.commit(repo, added, branch=rev, message=header.get("summary", ""), deleted=tuple(deleted))
        self._send_json(
            {"success": True, "commitOid": sha, "commitUrl": f"{self.hub.endpoint}/{repo}/commit/{sha}", "hookOutput": ""}
        )

    def create_branch(self, repo: str, rev: str, body: bytes, **_) -> None:
        self._writable_repo(repo)
        starting_point = json.loads(body or b"{}").get("startingPoint") or "main"
        self.hub.branch(repo, rev, starting_point)
        self._send_json({})

    def create_tag(self, repo: str, rev: str, body: bytes, **_) -> None:
        self._writable_repo(repo)
        self.hub.tag(repo, json.loads(body)["tag"], rev)
        self._send_json({})

    def _no_pull_requests(self) -> None:
        if self.query.get("create_pr"):
            raise HubError(400, "this test Hub has no pull requests")

    # -- plumbing -----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_json(self, payload) -> None:
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict, head: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
