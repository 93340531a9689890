"""Loading and pushing checkpoints by Hub repo id, against a real HTTP server that speaks the Hub protocol.

Nothing is mocked: huggingface_hub and detector/hub.py run unchanged against
tests/hubserver.py on 127.0.0.1. Loads by repo id run in a subprocess with
HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE set in its environment, exactly as a user
would set them (huggingface_hub reads them once, at import). References are
``hf-hub:org/name[@rev]`` (always the Hub) or ``org/name[@rev]`` (the Hub unless a
local folder of that name exists), both covered here, the ambiguous case included.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from PIL import Image

from detector import Detector, ModelLoadError, PushError, create_model, get_config, push_to_hub
from detector.hub import is_hub_ref, model_card, read_card, resolve_checkpoint, split_ref
from corpus import free_port, save_tiny_checkpoint
from hubserver import HubServer, git_blob_sha1

REPO_ROOT = Path(__file__).resolve().parent.parent
CARD = "---\nlicense: mit\n---\n# ConVitX tiny (test checkpoint)\n"

pytestmark = pytest.mark.timeout(300)

# Runs in a fresh interpreter: loads each job's ref and prints p_fake, or the ModelLoadError message.
LOADER = r"""
import json, sys
from detector import Detector, ModelLoadError
image, jobs = sys.argv[1], json.loads(sys.argv[2])
results = []
for job in jobs:
    try:
        detector = Detector.from_pretrained(job["ref"], revision=job.get("revision"), device="cpu", **job.get("hub", {}))
        results.append({"p_fake": detector.predict(image, cam=False).p_fake, "folder": str(detector.folder)})
    except ModelLoadError as exc:
        results.append({"error": str(exc)})
print(json.dumps(results))
"""


def load_in_subprocess(jobs: list[dict], image: Path, hf_home: Path, endpoint: str, cwd: Path = REPO_ROOT,
                       **env_extra: str) -> list[dict]:
    """Relative refs resolve against ``cwd``; this checkout's detector is imported wherever that is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        # same intra-op thread count as this process, so CPU results are bit-identical
        OMP_NUM_THREADS=str(torch.get_num_threads()),
        **env_extra,
    )
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(image), json.dumps(jobs)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(jobs)
    return results


def closed_endpoint() -> str:
    """An endpoint nobody listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def local_p_fake(folder: Path, image: Path) -> float:
    return Detector.from_pretrained(folder, device="cpu").predict(image, cam=False).p_fake


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, image) -> dict[str, tuple[Path, float]]:
    """Two tiny checkpoints with different weights: name -> (folder, p_fake loaded locally in this process)."""
    out = {}
    for name, seed in (("a", 1), ("b", 2)):
        folder = save_tiny_checkpoint(tmp_path_factory.mktemp(f"ckpt_{name}"), seed=seed, card=CARD)
        out[name] = (folder, local_p_fake(folder, image))
    assert out["a"][1] != out["b"][1], "the two checkpoints must be told apart by their output"
    return out


@pytest.fixture(scope="module")
def online(tmp_path_factory, checkpoints, image) -> SimpleNamespace:
    """One test Hub holding several repos, and ONE subprocess that loads them all over HTTP.

    Starting an interpreter that imports torch and timm takes seconds (more on a busy machine),
    so the online loads share a single one; each test below checks its own jobs. The server is
    stopped afterwards, which the offline tests rely on.
    """
    (folder_a, _), (folder_b, _) = checkpoints["a"], checkpoints["b"]
    hf_home = tmp_path_factory.mktemp("hf_home")
    marker = tmp_path_factory.mktemp("tripwire") / "UNPICKLED"
    with HubServer() as hub:
        sha = {"tiny": hub.seed("org/convitx-tiny", folder_a), "pinned1": hub.seed("org/pinned", folder_a)}
        hub.tag("org/pinned", "v1", sha["pinned1"])
        sha["pinned2"] = hub.seed("org/pinned", folder_b)
        # A pickle that would leave a mark if anything ever unpickled it.
        pickled = pickle.dumps(_Tripwire(str(marker)))
        hub.create_repo("org/bin-only", initial_files={"pytorch_model.bin": pickled})
        hub.create_repo(
            "org/bin-and-config",
            initial_files={"pytorch_model.bin": pickled, "config.json": (folder_a / "config.json").read_bytes()},
        )
        # The ambiguous case: the subprocess runs where a local folder is literally named org/ambiguous
        # (holding checkpoint a) while the Hub repo org/ambiguous holds checkpoint b.
        sha["ambiguous"] = hub.seed("org/ambiguous", folder_b)
        workdir = tmp_path_factory.mktemp("workdir")
        shutil.copytree(folder_a, workdir / "org" / "ambiguous")
        jobs = {
            "tiny": {"ref": "org/convitx-tiny"},
            "pinned@sha1": {"ref": f"org/pinned@{sha['pinned1']}"},
            "pinned@v1": {"ref": "org/pinned@v1"},
            "pinned revision=sha1": {"ref": "org/pinned", "revision": sha["pinned1"]},
            "pinned": {"ref": "org/pinned"},
            "pinned@v1 revision=main": {"ref": "org/pinned@v1", "revision": "main"},  # explicit revision wins
            "missing repo": {"ref": "org/missing"},
            "missing branch": {"ref": "org/convitx-tiny@no-such-branch"},
            "missing sha": {"ref": "org/convitx-tiny", "revision": "f" * 40},
            "bin only": {"ref": "org/bin-only"},
            "bin and config": {"ref": "org/bin-and-config"},
            "hf-hub tiny": {"ref": "hf-hub:org/convitx-tiny"},
            "hf-hub pinned@v1": {"ref": "hf-hub:org/pinned@v1"},
            "hf-hub missing": {"ref": "hf-hub:org/missing"},
            "ambiguous plain": {"ref": "org/ambiguous"},  # the local folder wins
            "ambiguous hf-hub": {"ref": "hf-hub:org/ambiguous"},  # the prefix always means the Hub
            "ambiguous@rev plain": {"ref": "org/ambiguous@main"},  # no local path of that name: the Hub
        }
        results = load_in_subprocess(list(jobs.values()), image, hf_home, hub.endpoint, cwd=workdir)
        requests = list(hub.requests)
        endpoint = hub.endpoint
    return SimpleNamespace(
        hf_home=hf_home, sha=sha, results=dict(zip(jobs, results)), requests=requests, endpoint=endpoint, marker=marker,
        workdir=workdir,
    )


@pytest.fixture(scope="module")
def offline(online, tmp_path_factory, checkpoints, image) -> SimpleNamespace:
    """ONE offline subprocess (HF_HUB_OFFLINE=1, HF_ENDPOINT at a closed port) over the cache `online` left,
    plus a repo whose cache entry is built by hand, without any download."""
    handmade_sha = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = online.hf_home / "hub" / "models--org--handmade"
    folder = checkpoints["b"][0]
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "snapshots" / handmade_sha).mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    for name in ("config.json", "model.safetensors", "README.md"):
        data = (folder / name).read_bytes()
        blob = git_blob_sha1(data)
        (repo_dir / "blobs" / blob).write_bytes(data)
        (repo_dir / "snapshots" / handmade_sha / name).symlink_to(Path("..", "..", "blobs", blob))
    (repo_dir / "refs" / "main").write_text(handmade_sha)  # no trailing newline, as huggingface_hub writes it

    jobs = {
        "tiny": {"ref": "org/convitx-tiny"},
        "tiny@sha": {"ref": f"org/convitx-tiny@{online.sha['tiny']}"},
        "never downloaded": {"ref": "org/never-downloaded"},
        "handmade": {"ref": "org/handmade"},
        "handmade@sha": {"ref": f"org/handmade@{handmade_sha}"},
        "handmade@v9": {"ref": "org/handmade@v9"},
    }
    results = load_in_subprocess(list(jobs.values()), image, online.hf_home, closed_endpoint(), HF_HUB_OFFLINE="1")
    return SimpleNamespace(results=dict(zip(jobs, results)), handmade_dir=repo_dir, handmade_sha=handmade_sha)


def test_load_by_repo_id_over_http(online, checkpoints):
    result, sha = online.results["tiny"], online.sha["tiny"]
    assert "error" not in result, result
    assert result["p_fake"] == checkpoints["a"][1]  # identical, not just close
    snapshot = online.hf_home / "hub" / "models--org--convitx-tiny" / "snapshots" / sha
    assert Path(result["folder"]) == snapshot
    assert (snapshot / "README.md").read_text() == CARD  # the optional card came along
    assert (online.hf_home / "hub" / "models--org--convitx-tiny" / "refs" / "main").read_text() == sha
    fetched = {path for method, path in online.requests if method == "GET" and path.startswith("/org/convitx-tiny/")}
    # One snapshot_download: "main" is resolved to a commit once, and every file is fetched at that
    # commit, so a push landing mid-download cannot pair one commit's config with another's weights.
    assert fetched == {f"/org/convitx-tiny/resolve/{sha}/{name}" for name in ("config.json", "model.safetensors", "README.md")}
    lookups = [path for _, path in online.requests if path == "/api/models/org/convitx-tiny/revision/main"]
    assert len(lookups) == 2  # one per load of main: "tiny" and "hf-hub tiny"


def test_pinned_revision_is_honoured(online, checkpoints):
    p_a, p_b = checkpoints["a"][1], checkpoints["b"][1]
    sha1, sha2 = online.sha["pinned1"], online.sha["pinned2"]
    expected = {
        "pinned@sha1": (p_a, sha1),
        "pinned@v1": (p_a, sha1),
        "pinned revision=sha1": (p_a, sha1),
        "pinned": (p_b, sha2),
        "pinned@v1 revision=main": (p_b, sha2),
    }
    got = {job: (online.results[job].get("p_fake"), Path(online.results[job].get("folder", "")).name) for job in expected}
    assert got == expected


def test_offline_loads_from_the_cache_a_download_left(offline, checkpoints):
    expected = checkpoints["a"][1]
    assert offline.results["tiny"].get("p_fake") == expected, offline.results["tiny"]
    assert offline.results["tiny@sha"].get("p_fake") == expected, offline.results["tiny@sha"]
    err = offline.results["never downloaded"].get("error", "")
    assert "org/never-downloaded" in err and "offline cache only" in err, err


def test_offline_loads_a_hand_made_cache(offline, checkpoints):
    """The cache layout built by hand: blobs/, snapshots/<sha>/ relative symlinks, refs/main."""
    expected = checkpoints["b"][1]
    by_branch, by_sha = offline.results["handmade"], offline.results["handmade@sha"]
    assert by_branch.get("p_fake") == expected, by_branch
    assert by_sha.get("p_fake") == expected, by_sha
    assert Path(by_branch["folder"]) == offline.handmade_dir / "snapshots" / offline.handmade_sha
    err = offline.results["handmade@v9"].get("error", "")
    assert "org/handmade" in err and "v9" in err and "offline cache only" in err, err


def test_server_down_without_offline_flag_falls_back_to_the_cache(online, offline, checkpoints, image):
    # `offline` first: both use online.hf_home, and this test must not race its set-up.
    [result] = load_in_subprocess([{"ref": "org/convitx-tiny"}], image, online.hf_home, closed_endpoint())
    assert result.get("p_fake") == checkpoints["a"][1], result


def test_load_errors_name_what_was_tried(online):
    results, endpoint = online.results, online.endpoint
    err = results["missing repo"].get("error", "")
    assert "'org/missing'" in err and "at revision main" in err and endpoint in err and "RepositoryNotFound" in err, err
    err = results["missing branch"].get("error", "")
    assert "Hub repo org/convitx-tiny at revision no-such-branch" in err and "RevisionNotFound" in err, err
    err = results["missing sha"].get("error", "")
    assert f"Hub repo org/convitx-tiny at revision {'f' * 40}" in err and "RevisionNotFound" in err, err
    for job, repo in (("bin only", "org/bin-only"), ("bin and config", "org/bin-and-config")):
        err = results[job].get("error", "")
        assert repo in err and "safetensors" in err, err

    requested = [path for _, path in online.requests]
    assert not [p for p in requested if p.endswith(".bin")], requested
    # the repo was listed, so only what exists of the allowed files was fetched: config.json
    fetched = [p for p in requested if p.startswith("/org/bin-and-config/resolve/")]
    assert fetched and all(p.endswith("/config.json") for p in fetched), fetched
    assert not online.marker.exists()

    err = results["hf-hub missing"].get("error", "")
    assert "'hf-hub:org/missing'" in err and "RepositoryNotFound" in err and "no folder at" not in err, err


def test_hf_hub_prefix_loads_from_the_hub(online, checkpoints):
    assert online.results["hf-hub tiny"].get("p_fake") == checkpoints["a"][1], online.results["hf-hub tiny"]
    pinned = online.results["hf-hub pinned@v1"]
    assert (pinned.get("p_fake"), Path(pinned.get("folder", "")).name) == (checkpoints["a"][1], online.sha["pinned1"])


def test_ambiguous_ref_local_folder_wins_unless_prefixed(online, checkpoints):
    """A local folder literally named org/ambiguous (checkpoint a) and a Hub repo org/ambiguous (checkpoint b)."""
    p_a, p_b, sha = checkpoints["a"][1], checkpoints["b"][1], online.sha["ambiguous"]
    plain, prefixed, at_rev = (online.results[k] for k in ("ambiguous plain", "ambiguous hf-hub", "ambiguous@rev plain"))
    assert plain.get("p_fake") == p_a and Path(plain["folder"]) == Path("org/ambiguous"), plain
    assert prefixed.get("p_fake") == p_b and Path(prefixed["folder"]).name == sha, prefixed
    assert at_rev.get("p_fake") == p_b and Path(at_rev["folder"]).name == sha, at_rev
    lookups = [p for _, p in online.requests if p == "/api/models/org/ambiguous/revision/main"]
    assert len(lookups) == 2, lookups  # the prefixed ref and the @main one; the plain ref never asked the Hub


def test_ref_parsing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert split_ref("hf-hub:org/name@v1") == ("org/name", "v1")
    assert split_ref("hf-hub:org/name@v1", revision="main") == ("org/name", "main")
    assert split_ref("org/name") == ("org/name", None)
    assert is_hub_ref("org/name") and is_hub_ref("hf-hub:org/name@v1") and not is_hub_ref("folder")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_ref("org/name")  # an existing folder wins...
    assert is_hub_ref("hf-hub:org/name") and is_hub_ref("org/name@v1")  # ...but not over the prefix or another name
    with pytest.raises(ModelLoadError) as info:
        resolve_checkpoint("hf-hub:not a repo", cache_dir=str(tmp_path / "cache"))
    assert "'hf-hub:not a repo'" in str(info.value) and "hf-hub:org/name[@revision]" in str(info.value)


class _Tripwire:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("ref", ["not a repo id", "org/name/extra", "org/", "/name", "org/na me@v1"])
def test_invalid_ref_is_a_model_load_error(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so no relative folder of that name can exist
    with pytest.raises(ModelLoadError) as info:
        resolve_checkpoint(ref, cache_dir=str(tmp_path / "cache"))
    assert repr(ref) in str(info.value) and "org/name[@revision]" in str(info.value)


def test_local_folder_without_safetensors(tmp_path, checkpoints):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(checkpoints["a"][0] / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"never read")
    with pytest.raises(ModelLoadError) as info:
        Detector.from_pretrained(folder, device="cpu")
    message = str(info.value)
    assert str(folder.resolve()) in message and "lacks model.safetensors" in message, message


def test_weights_that_do_not_match_the_config(tmp_path, checkpoints):
    folder = tmp_path / "mismatch"
    shutil.copytree(checkpoints["a"][0], folder)
    get_config("convitx_tiny", head_hidden=48).save(folder / "config.json")  # the weights have head_hidden=32
    with pytest.raises(ModelLoadError) as info:
        Detector.from_pretrained(folder, device="cpu")
    message = str(info.value)
    assert str(folder / "model.safetensors") in message and str(folder / "config.json") in message, message


def test_upload_folder_then_load_by_repo_id(hub_server, checkpoints, image, tmp_path):
    (folder_a, p_a), (folder_b, p_b) = checkpoints["a"], checkpoints["b"]
    token = hub_server.token = "hf_test_write_token"  # now required for writes and for private repos
    api = HfApi(endpoint=hub_server.endpoint, token=token)
    url = api.create_repo("org/uploaded", private=True, exist_ok=True)
    assert url.repo_id == "org/uploaded"
    api.create_repo("org/uploaded", private=True, exist_ok=True)  # second time: 409, tolerated
    sha_a = api.upload_folder(repo_id="org/uploaded", folder_path=folder_a, commit_message="checkpoint a").oid
    files = hub_server.files("org/uploaded")
    for name in ("config.json", "model.safetensors", "README.md"):
        assert files[name] == (folder_a / name).read_bytes()
    sha_b = api.upload_folder(repo_id="org/uploaded", folder_path=folder_b, commit_message="checkpoint b").oid
    assert sha_b != sha_a and hub_server.resolve("org/uploaded", "main") == sha_b
    assert api.model_info("org/uploaded").sha == sha_b

    jobs = [
        {"ref": "org/uploaded", "hub": {"token": False}},  # private: no token, no access
        {"ref": "org/uploaded"},  # token from HF_TOKEN
        {"ref": f"org/uploaded@{sha_a}"},
    ]
    anonymous, latest, first = load_in_subprocess(
        jobs, image, tmp_path / "hf_home", hub_server.endpoint, HF_TOKEN=token
    )
    assert "org/uploaded" in anonymous.get("error", "") and "RepositoryNotFound" in anonymous["error"], anonymous
    assert latest.get("p_fake") == p_b, latest
    assert first.get("p_fake") == p_a, first


def test_push_to_hub_one_commit_with_a_model_card(hub_server, checkpoints, tmp_path):
    """The library's push: a model (or folder) and a ModelCard become ONE commit; the card reads back."""
    token = hub_server.token = "hf_test_write_token"
    folder_a = checkpoints["a"][0]
    card = model_card("# Pushed\n\nA test checkpoint.\n", tags=["test"])
    url = push_to_hub(folder_a, "org/pushed", card=card, token=token, endpoint=hub_server.endpoint)
    repo = hub_server.repos["org/pushed"]
    assert len(repo["commits"]) == 2 and repo["refs"]["main"] in url  # .gitattributes from create_repo, then ours
    files = hub_server.files("org/pushed")
    for name in ("config.json", "model.safetensors"):
        assert files[name] == (folder_a / name).read_bytes(), name
    (tmp_path / "README.md").write_bytes(files["README.md"])
    back = read_card(tmp_path)
    assert back.text == "# Pushed\n\nA test checkpoint.\n"
    assert back.data.library_name == "convitx" and back.data.tags == ["test"] and back.data.license == "apache-2.0"
    assert (folder_a / "README.md").read_text() == CARD  # the folder's own card was not touched

    torch.manual_seed(3)
    model = create_model("convitx_tiny")
    push_to_hub(model, "org/pushed", revision="v2", token=token, endpoint=hub_server.endpoint)
    on_branch = hub_server.files("org/pushed", "v2")
    assert on_branch["model.safetensors"] != files["model.safetensors"]  # the new model, on its branch
    assert on_branch["README.md"] == files["README.md"]  # branched from main; no card given, none replaced
    assert hub_server.resolve("org/pushed", "main") == repo["refs"]["main"]  # main untouched

    with pytest.raises(PushError) as info:
        push_to_hub(folder_a, "org/pushed", token="a-wrong-token", endpoint=hub_server.endpoint)
    assert "org/pushed" in str(info.value) and str(folder_a.resolve()) in str(info.value)
