"""``registry export`` / ``registry import`` between two real registries (SQLite and Postgres), and every
kind of bad bundle: each is refused with the wrong entry named, and nothing is recorded."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.catalog.models import Model
from registry.errors import IntegrityError, UsageError
from registry.services.bundle import export_bundle, import_bundle
from registry.services.context import Registry
from registry.services.listing import show_model
from tests.conftest import write_json, write_safetensors
from tests.serve_helpers import add_registered, make_tiny_repo, set_state


@pytest.fixture
def source(reg, tmp_path):
    """A base, and an adapter over it with a smoke run; both registered."""
    add_registered(reg, make_tiny_repo(tmp_path / "base", big=False), "acme/base", smoke=True)
    adapter = tmp_path / "adapter"
    write_json(adapter / "adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": "acme/base", "r": 2})
    write_safetensors(adapter / "adapter_model.safetensors", {"base_model.model.layer.0.lora_A.weight": ("F32", [2, 8])})
    add_registered(reg, adapter, "acme/adapter", smoke=True)
    return reg


def _state(registry: Registry, name: str) -> dict:
    """What `registry show` says, without ids and the import's own timestamps."""
    detail = dataclasses.asdict(show_model(registry, name))
    detail["summary"].pop("created_at")
    return detail


def _model_count(registry: Registry) -> int:
    with registry.catalog.reader() as session:
        return session.scalar(select(func.count()).select_from(Model))


@pytest.mark.parametrize("suffix", ["", ".tar"])
def test_roundtrip_carries_records_and_is_incremental(source, target, tmp_path, suffix):
    out = tmp_path / f"bundle{suffix}"
    exported = export_bundle(source, ["acme/adapter"], out)
    assert [m.name for m in exported.models] == ["acme/base", "acme/adapter"]  # the base comes along, first
    assert exported.format == ("tar" if suffix else "dir")
    result = import_bundle(target, out)
    assert result.blobs_written == exported.blobs and result.blobs_skipped == 0
    for name in ("acme/base", "acme/adapter"):
        assert _state(target, name) == _state(source, name)
    got = _state(target, "acme/adapter")
    assert got["summary"]["state"] == "registered" and got["smoke_runs"][0]["fingerprint"] == "ab" * 32
    assert [(l["relation"], l["repo"], l["model_state"]) for l in got["lineage"]] == [("base", "acme/base", "registered")]
    again = import_bundle(target, out)
    assert (again.blobs_written, again.blobs_skipped) == (0, exported.blobs)
    assert len(show_model(target, "acme/adapter").smoke_runs) == 1  # not duplicated
    from registry.services.verify import verify

    assert verify(target, []).ok


def test_cli_export_import_and_bad_inputs(cli, source, target, tmp_path):
    out = tmp_path / "b.tar"
    r = cli("export", "acme/base", "--output", out, "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["models"][0]["name"] == "acme/base"
    assert cli("export", "acme/base", "--output", out).exit_code == 2  # never overwrites: a bad --output, not a catalog conflict
    assert cli("export", "acme/absent", "--output", tmp_path / "x").exit_code == 3
    assert not (tmp_path / "x").exists()
    set_state(source, "acme/base", "quarantined", "bad smoke")
    r = cli("export", "acme/adapter", "--output", tmp_path / "y.tar")
    assert r.exit_code == 9 and "quarantined" in r.stderr and not (tmp_path / "y.tar").exists()
    assert cli("import", tmp_path / "absent.tar").exit_code == 2
    r = cli("import", out, "--json")  # into the source registry, where acme/base is now quarantined
    assert r.exit_code == 9 and "local quarantine" in r.json()["message"]


def _good_tar(source: Registry, tmp_path: Path) -> Path:
    out = tmp_path / "good.tar"
    export_bundle(source, ["acme/adapter"], out)
    return out


def _rewrite_tar(good: Path, dest: Path, *, extra: list[tuple[tarfile.TarInfo, bytes | None]] = (),
                 edit=None) -> Path:
    """Copy ``good`` member by member (``edit(info, data) -> data`` may change one), then add ``extra``."""
    with tarfile.open(good) as src, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isreg() else None
            if edit is not None:
                data = edit(m, data)
            m.size = len(data) if data is not None else 0
            out.addfile(m, io.BytesIO(data) if data is not None else None)
        for info, data in extra:
            out.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"x", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def _refused(target: Registry, path: Path, entry: str) -> str:
    with pytest.raises(IntegrityError) as caught:
        import_bundle(target, path)
    assert entry in caught.value.message, caught.value.message
    assert _model_count(target) == 0  # nothing recorded
    assert not [p for p in (target.settings.blobs_dir).rglob("*.partial")]
    return caught.value.message


@pytest.mark.parametrize("evil, entry", [
    (_member("../escape.txt"), "../escape.txt"),
    (_member("/etc/evil"), "/etc/evil"),
    (_member("blobs/link", tarfile.SYMTYPE, link="/etc/passwd"), "blobs/link"),
    (_member("blobs/hard", tarfile.LNKTYPE, link="bundle.json"), "blobs/hard"),
    (_member("blobs/dev", tarfile.CHRTYPE), "blobs/dev"),
    (_member("blobs/fifo", tarfile.FIFOTYPE), "blobs/fifo"),
    (_member("bundle.json", data=b"{}"), "bundle.json"),  # a duplicate
    (_member("notes.txt"), "notes.txt"),  # unknown
    (_member("blobs/" + "0" * 64), "blobs/" + "0" * 64),  # a blob nobody lists
])
def test_tar_entries_refused(source, target, tmp_path, evil, entry):
    bad = _rewrite_tar(_good_tar(source, tmp_path), tmp_path / "bad.tar", extra=[evil])
    _refused(target, bad, entry)


def test_tampered_truncated_and_inconsistent_bundles(source, target, tmp_path):
    good = _good_tar(source, tmp_path)
    index = json.loads(tarfile.open(good).extractfile("bundle.json").read())
    victim = max(index["blobs"], key=lambda b: b["size"])["sha256"]

    def flip(info, data):
        if info.name == f"blobs/{victim}":
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    msg = _refused(target, _rewrite_tar(good, tmp_path / "flip.tar", edit=flip), f"blobs/{victim}")
    assert "sha256" in msg

    raw = good.read_bytes()
    with tarfile.open(good) as tar:  # cut inside the last member's data, not just the tar's zero padding
        last = tar.getmembers()[-1]
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(raw[: last.offset_data + max(1, last.size // 2)])
    with pytest.raises(IntegrityError, match="truncated"):
        import_bundle(target, truncated)
    assert _model_count(target) == 0

    def lie_blake3(info, data):
        if info.name == "bundle.json":
            doc = json.loads(data)
            for b in doc["blobs"]:
                if b["sha256"] == victim:
                    b["blake3"] = "0" * 64
            for m in doc["models"]:
                for c in m["manifest"]["components"]:
                    for f in c["files"]:
                        if f["sha256"] == victim:
                            f["blake3"] = "0" * 64
            return json.dumps(doc).encode()
        return data

    _refused(target, _rewrite_tar(good, tmp_path / "b3.tar", edit=lie_blake3), f"blobs/{victim}")

    def bad_root(info, data):
        if info.name == "bundle.json":
            doc = json.loads(data)
            doc["models"][0]["manifest"]["components"][0]["files"][0]["path"] = "renamed.json"
            return json.dumps(doc).encode()
        return data

    assert "root digest" in _refused(target, _rewrite_tar(good, tmp_path / "root.tar", edit=bad_root), "bundle.json")

    def not_json(info, data):
        return b"{nope" if info.name == "bundle.json" else data

    _refused(target, _rewrite_tar(good, tmp_path / "json.tar", edit=not_json), "bundle.json")


def test_directory_bundles_refuse_links_unknown_and_missing_files(source, target, tmp_path):
    good = tmp_path / "dir-bundle"
    export_bundle(source, ["acme/adapter"], good)

    def variant(name: str, change) -> Path:
        copy = tmp_path / name
        shutil.copytree(good, copy, symlinks=True)
        change(copy)
        return copy

    blob = sorted((good / "blobs").iterdir())[0].name
    _refused(target, variant("link", lambda d: (d / "blobs" / "evil").symlink_to("/etc/passwd")), "blobs/evil")
    _refused(target, variant("unknown", lambda d: (d / "README").write_text("hi")), "README")
    _refused(target, variant("subdir", lambda d: (d / "blobs" / "x").mkdir()), "blobs/x")
    _refused(target, variant("missing", lambda d: (d / "blobs" / blob).unlink()), f"blobs/{blob}")

    def shorten(d: Path) -> None:
        p = d / "blobs" / blob
        p.chmod(0o644)
        p.write_bytes(p.read_bytes()[:-1])

    _refused(target, variant("short", shorten), f"blobs/{blob}")

    def fifo(d: Path) -> None:
        import os

        os.mkfifo(d / "blobs" / "pipe")

    _refused(target, variant("fifo", fifo), "blobs/pipe")
    with pytest.raises(UsageError):
        import_bundle(target, tmp_path / "nowhere")
    result = import_bundle(target, good)  # the untouched bundle still imports
    assert [m.name for m in result.models] == ["acme/base", "acme/adapter"]


def test_export_refuses_busy_output_and_leaves_nothing(source, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        export_bundle(source, ["acme/base"], out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(UsageError):
        export_bundle(source, [], tmp_path / "none")
    assert sorted(p.name for p in tmp_path.iterdir() if "incomplete" in p.name) == []
