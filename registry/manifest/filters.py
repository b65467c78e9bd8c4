"""``--include`` / ``--exclude`` (as ``hf download`` spells them) over a manifest's selection.

They only ever change the optional part of a model: an include adds files of the model's own repo as an
optional component; an exclude drops optional files. An exclude that would drop a required file is refused,
naming the file, since a model without it is exactly the incomplete model the registry exists to refuse.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from registry.errors import UsageError
from registry.manifest.resolve import Selection
from registry.manifest.schema import ComponentSpec, FileSpec

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gguf", ".ckpt", ".h5", ".msgpack")


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def filter_selections(selections: Sequence[Selection], own_repo: str, own_paths: Iterable[str], *,
                      include: Sequence[str] = (), exclude: Sequence[str] = ()) -> tuple[Selection, ...]:
    if not include and not exclude:
        return tuple(selections)
    kept: list[Selection] = []
    for sel in selections:
        dropped = [p for p in sel.paths if _matches(p, exclude)]
        if dropped and sel.component.required:
            raise UsageError(
                f"--exclude {' '.join(exclude)} would drop {sel.component.role}: {', '.join(dropped)} of "
                f"{sel.component.repo}, which the model requires (a model without it is incomplete); "
                "exclude only optional files", details={"required": dropped})
        if dropped:
            sel = Selection(sel.component, tuple(p for p in sel.paths if p not in dropped), sel.missing, sel.mismatched)
        kept.append(sel)
    if include:
        taken = {p for s in kept if s.component.repo == own_repo for p in s.paths}
        paths = sorted(own_paths)
        for pattern in include:
            if not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
                raise UsageError(f"--include {pattern!r} matches no file of {own_repo}; patterns are matched "
                                 "against paths in the repo, such as 'onnx/model.onnx' or '*.md'",
                                 details={"pattern": pattern})
        extra = [p for p in paths if _matches(p, include) and not _matches(p, exclude) and p not in taken]
        for role, wanted in (("weights", [p for p in extra if p.endswith(WEIGHT_SUFFIXES)]),
                             ("config", [p for p in extra if not p.endswith(WEIGHT_SUFFIXES)])):
            if wanted:
                spec = ComponentSpec(role=role, repo=own_repo, files=tuple(FileSpec(p) for p in wanted),
                                     required=False, note="--include")
                kept.append(Selection(spec, tuple(wanted)))
    return tuple(kept)
