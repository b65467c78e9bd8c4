"""The catalog's tables. Digest formats, states, roles and uniqueness are enforced by the database."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.catalog.base import Base, Sha1, Sha256, Timestamp, hex_check, utcnow
from registry.catalog.states import QUARANTINED, STATES

ROLES = ("config", "weights", "base", "adapter", "head", "visual", "tokenizer", "processor", "code")
LINEAGE_RELATIONS = ("derived_from", "base", "merged_from")
LAYOUTS = ("hf-cache", "dir")
# what `audit --verify` found on a node's disk the last time it looked (NULL: never verified)
VERIFY_STATES = ("ok", "drifted", "missing")
REPO_TYPES = ("model", "dataset", "space")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Repo(Base):
    __tablename__ = "repos"
    __table_args__ = (CheckConstraint(_in("repo_type", REPO_TYPES), name="repo_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[str] = mapped_column(String(200), unique=True)
    repo_type: Mapped[str] = mapped_column(String(16), default="model")
    created_at: Mapped[Timestamp]

    revisions: Mapped[list[Revision]] = relationship(back_populates="repo")
    refs: Mapped[list[Ref]] = relationship(back_populates="repo")


class Revision(Base):
    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("repo_id", "commit_sha"), hex_check("commit_sha", 40, "commit_sha_hex"))

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    commit_sha: Mapped[Sha1]
    source: Mapped[str] = mapped_column(String(1000))  # endpoint URL, or local:<path>
    created_at: Mapped[Timestamp]

    repo: Mapped[Repo] = relationship(back_populates="revisions")
    files: Mapped[list[File]] = relationship(back_populates="revision", order_by="File.path")


class Ref(Base):
    __tablename__ = "refs"
    __table_args__ = (UniqueConstraint("repo_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    updated_at: Mapped[Timestamp]

    repo: Mapped[Repo] = relationship(back_populates="refs")
    revision: Mapped[Revision] = relationship()


class Blob(Base):
    __tablename__ = "blobs"
    __table_args__ = (
        hex_check("sha256", 64, "sha256_hex"),
        hex_check("blake3", 64, "blake3_hex"),
        hex_check("git_sha1", 40, "git_sha1_hex", nullable=True),
        CheckConstraint("size >= 0", name="size_nonnegative"),
    )

    sha256: Mapped[Sha256] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    blake3: Mapped[Sha256]
    git_sha1: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[Timestamp]


class File(Base):
    """One path of one revision. ``git_oid`` is the Hub's tree oid (the pointer's sha1 for LFS files)."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("revision_id", "path"),
        hex_check("git_oid", 40, "git_oid_hex"),
        # `audit --scan` finds regular files of an HF cache by their etag, the git blob sha1
        Index("ix_files_git_oid", "git_oid"),
        CheckConstraint("size >= 0", name="size_nonnegative"),
        CheckConstraint(
            "path <> '' AND path NOT LIKE '/%' AND path <> '..' AND path NOT LIKE '../%' "
            "AND path NOT LIKE '%/../%' AND path NOT LIKE '%/..' AND replace(path, '\\', '') = path",
            name="path_relative",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1000))
    size: Mapped[int] = mapped_column(BigInteger)
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    git_oid: Mapped[Sha1]
    lfs: Mapped[bool] = mapped_column(Boolean, default=False)

    revision: Mapped[Revision] = relationship(back_populates="files")
    blob: Mapped[Blob] = relationship()


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("name", "revision_id"),
        CheckConstraint(_in("state", STATES), name="state"),
        CheckConstraint(f"state <> '{QUARANTINED}' OR state_reason IS NOT NULL", name="quarantine_reason"),
        hex_check("root_digest", 64, "root_digest_hex"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id"), index=True)
    family: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str | None] = mapped_column(Text)
    inferred: Mapped[bool] = mapped_column(Boolean, default=False)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    root_digest: Mapped[Sha256]
    created_at: Mapped[Timestamp]
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    revision: Mapped[Revision] = relationship()
    components: Mapped[list[Component]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="Component.position"
    )
    lineage: Mapped[list[Lineage]] = relationship(
        back_populates="model", cascade="all, delete-orphan", foreign_keys="Lineage.model_id"
    )
    smoke_runs: Mapped[list[SmokeRun]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="SmokeRun.id"
    )


class Component(Base):
    __tablename__ = "components"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"), UniqueConstraint("model_id", "position"))

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id"), index=True)
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)

    model: Mapped[Model] = relationship(back_populates="components")
    revision: Mapped[Revision] = relationship()
    files: Mapped[list[File]] = relationship(secondary="component_files", order_by="File.path")


class ComponentFile(Base):
    __tablename__ = "component_files"

    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="CASCADE"), primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True, index=True)


class Lineage(Base):
    __tablename__ = "lineage"
    __table_args__ = (CheckConstraint(_in("relation", LINEAGE_RELATIONS), name="relation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    relation: Mapped[str] = mapped_column(String(16))
    parent_revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id"))
    parent_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[Timestamp]

    model: Mapped[Model] = relationship(back_populates="lineage", foreign_keys=[model_id])
    parent_revision: Mapped[Revision] = relationship()
    parent_model: Mapped[Model | None] = relationship(foreign_keys=[parent_model_id])


class SmokeRun(Base):
    __tablename__ = "smoke_runs"
    __table_args__ = (hex_check("fingerprint", 64, "fingerprint_hex", nullable=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    device: Mapped[str] = mapped_column(String(64))
    dtype: Mapped[str] = mapped_column(String(32))
    library_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    wall_ms: Mapped[float] = mapped_column(Float)
    output_shapes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp]

    model: Mapped[Model] = relationship(back_populates="smoke_runs")


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        CheckConstraint(_in("layout", LAYOUTS), name="layout"),
        CheckConstraint(f"verify_state IS NULL OR {_in('verify_state', VERIFY_STATES)}", name="verify_state"),
        hex_check("commit_sha", 40, "commit_sha_hex"),
        hex_check("root_digest", 64, "root_digest_hex"),
        # the fleet view: live rows (removed_at IS NULL) by node, in deployment order, without a sort
        Index("ix_deployments_removed_at_node_id", "removed_at", "node", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    node: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(4096))
    layout: Mapped[str] = mapped_column(String(16))
    commit_sha: Mapped[Sha1]
    root_digest: Mapped[Sha256]
    actor: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[Timestamp]
    removed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # the last `audit --verify` of this copy: when, by whom, from which host, what it found
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    verified_by: Mapped[str | None] = mapped_column(String(255))
    verified_host: Mapped[str | None] = mapped_column(String(255))
    verify_state: Mapped[str | None] = mapped_column(String(16))
    verify_problems: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    signature_state: Mapped[str | None] = mapped_column(String(16))

    model: Mapped[Model] = relationship()


class Event(Base):
    """Append-only: the migration installs triggers that refuse UPDATE and DELETE."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[Timestamp]
    actor: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(1000), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    # `registry history --since` reads a time range
    __table_args__ = (Index("ix_events_at", "at"),)


SIGNATURE_METHODS = ("key", "sigstore")


class Signature(Base):
    """A model-signing signature (``model.sig``, kept byte for byte) over files of one revision; one per signer.

    ``signer`` is the public key's fingerprint (sha256 of its PEM, model_signing's ``hint``) for the key method,
    ``identity (issuer)`` for Sigstore keyless bundles. Rows are only ever inserted or deleted, never updated,
    so a row's id names its bytes (the mirror caches what it proved about a row by id).
    """

    __tablename__ = "signatures"
    __table_args__ = (
        UniqueConstraint("revision_id", "signer"),
        CheckConstraint(_in("method", SIGNATURE_METHODS), name="method"),
        hex_check("root_digest", 64, "root_digest_hex"),
        CheckConstraint("files > 0", name="files_positive"),
        # never reuse an id (SQLite would reuse the highest after a delete): caches key on it
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    signer: Mapped[str] = mapped_column(String(500))
    bundle: Mapped[str] = mapped_column(Text)
    root_digest: Mapped[Sha256]  # the statement's subject digest (model_signing's root: names not included)
    files: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[Timestamp]

    revision: Mapped[Revision] = relationship()
