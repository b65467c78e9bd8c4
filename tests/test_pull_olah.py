"""`registry pull` through a real Olah (PyPI ``olah``), offline over git-LFS clones, next to huggingface_hub's
``snapshot_download`` through the same server.

What Olah 0.5.x does that the Hub does not (read off olah/mirror/repos.py and server_file_routes.py, and
checked below): its GET answers carry no X-Repo-Commit, no ETag and no Content-Length, and ignore Range;
its HEAD re-hashes the LFS object on disk and reports whatever it finds, so bytes changed in the mirror
folder are served as if they were the model. The tree still lists the LFS pointer's sha256, which is what
`registry pull` checks every byte against.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from registry.hashing import hash_file
from tests.hfclient import pulled_files, snapshot
from tests.olah_helpers import Olah, have_git_lfs, lfs_object, mirror_repo
from tests.pull_helpers import catalog_counts, dump, make_base, store_files

pytestmark = pytest.mark.hubclient
CLEAN = "test-org/olah-bert"
TAMPERED = "test-org/olah-tampered"
_REQUIRED = os.environ.get("REGISTRY_TEST_REQUIRE_EXTRAS") == "1" or bool(os.environ.get("CI"))


@dataclass(frozen=True)
class OlahMirror:
    olah: Olah
    commits: dict[str, str]  # repo -> the clone's HEAD commit
    sources: dict[str, Path]  # repo -> the folder that was committed
    clones: dict[str, Path]


@pytest.fixture(scope="module")
def olah(tmp_path_factory) -> Iterator[OlahMirror]:
    missing = [what for what, ok in (("git-lfs", have_git_lfs()), ("olah", importlib.util.find_spec("olah") is not None))
               if not ok]
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install -y git-lfs; the 'test' extra installs olah)"
        if _REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    work = tmp_path_factory.mktemp("olah")
    mirrors = work / "mirrors"
    commits, sources, clones = {}, {}, {}
    for repo, seed in ((CLEAN, 1), (TAMPERED, 2)):
        sources[repo] = make_base(work / "models" / repo, seed=seed)
        clones[repo], commits[repo] = mirror_repo(work, mirrors, repo, sources[repo])
    server = Olah(work, mirrors).start(ready_repo=CLEAN)
    try:
        yield OlahMirror(server, commits, sources, clones)
    finally:
        server.stop()


def _source_digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hash_file(p).sha256 for p in folder.rglob("*") if p.is_file()}


def test_olah_leaves_out_what_the_hub_sends_on_get(olah):
    """The behaviour the pull must cope with (if a new Olah changes it, docs/pull.md's table needs updating)."""
    url = f"{olah.olah.url}/{CLEAN}/resolve/{olah.commits[CLEAN]}/model.safetensors"
    head = httpx.head(url, timeout=30)
    assert head.status_code == 200 and head.headers["x-repo-commit"] == olah.commits[CLEAN]
    get = httpx.get(url, headers={"Range": "bytes=8-"}, timeout=30)
    assert get.status_code == 200  # Range ignored: the whole file
    assert not {"x-repo-commit", "etag", "content-length"} & set(get.headers)
    assert hashlib.sha256(get.content).hexdigest() == hash_file(olah.sources[CLEAN] / "model.safetensors").sha256


def test_pull_through_olah_verifies_every_byte_and_agrees_with_snapshot_download(cli, reg, olah, tmp_path):
    res = cli("pull", CLEAN, "--endpoint", olah.olah.url, "--json")
    assert res.exit_code == 0, dump(res)
    out = res.json()
    assert out["state"] == "verified" and out["commit"] == olah.commits[CLEAN] and out["endpoint"] == olah.olah.url
    pulled = pulled_files(reg, CLEAN, olah.commits[CLEAN])
    source = _source_digests(olah.sources[CLEAN])
    assert {"config.json", "model.safetensors"} <= set(pulled)
    assert pulled == {p: source[p] for p in pulled}  # every byte as committed
    assert out["downloaded_bytes"] == out["bytes"] == sum((olah.sources[CLEAN] / p).stat().st_size for p in pulled)
    assert cli("verify", CLEAN, "--deep").exit_code == 0
    snap = snapshot(olah.olah.url, CLEAN, "main", tmp_path / "hf")
    assert snap.error is None, snap.message
    assert {p: snap.files[p] for p in pulled} == pulled
    # the same bytes again: nothing is downloaded twice, whichever client asks first
    again = cli("pull", CLEAN, "--endpoint", olah.olah.url, "--json")
    assert again.exit_code == 0 and again.json()["downloaded_files"] == 0, dump(again)


def test_tampered_lfs_object_in_olahs_mirror_is_refused(cli, reg, olah, tmp_path):
    published = hash_file(olah.sources[TAMPERED] / "model.safetensors").sha256
    obj = lfs_object(olah.clones[TAMPERED], published)
    data = bytearray((olah.sources[TAMPERED] / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # same size, one byte off, safetensors header intact: only a digest can tell
    obj.write_bytes(bytes(data))
    tampered = hashlib.sha256(data).hexdigest()

    res = cli("pull", TAMPERED, "--endpoint", olah.olah.url, "--json")
    assert res.exit_code == 5, dump(res)
    err = res.json()
    assert err["error"] == "IntegrityError" and "model.safetensors" in err["message"]
    assert published in err["message"] and tampered in err["message"]
    assert catalog_counts(reg)["models"] == 0
    assert not [p for p in store_files(reg) if p.name.startswith(tampered)]  # the wrong bytes are not kept

    # huggingface_hub takes Olah's word for it (its HEAD re-hashes the object) and keeps the wrong bytes
    snap = snapshot(olah.olah.url, TAMPERED, "main", tmp_path / "hf")
    assert snap.error is None and snap.files["model.safetensors"] == tampered != published
