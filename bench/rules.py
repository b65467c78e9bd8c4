"""Family rules benchmark: our inference over the corpus of real layouts (tests/layouts/) vs
huggingface_hub's own file-list filtering for the same repos, side by side in one run.

Ours: the strict JSON reader (each repo's small JSON files, serialised to bytes and parsed as pull and
add parse them) + the family rules + the required-set builders (``infer_manifest``), per repo.
Peer: ``huggingface_hub.utils.filter_repo_objects`` over the same file list with the allow patterns a
user typically passes to ``snapshot_download`` for these models (it knows no families: it only globs).
The ratio is ours / peer; the target is < 50 ms per repo for ours.

    python bench/rules.py [--repeat 200] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from huggingface_hub.utils import filter_repo_objects  # noqa: E402

from registry.errors import ManifestError  # noqa: E402
from registry.manifest.infer import RepoView, infer_manifest  # noqa: E402
from registry.manifest.jsonread import expected_type, parse_json  # noqa: E402
from tests.layouts import Layout, load_all  # noqa: E402

# What a user passes to snapshot_download to skip other formats (the huggingface_hub docs' example style).
ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model", "*.py", "*.pt", "*.pth", "*.jinja"]
IGNORE = ["onnx/*", "openvino/*", "checkpoint-*/*", "*.msgpack", "*.h5", "*.ot"]


def _reader(layout: Layout):
    """Each JSON file as the bytes the endpoint would serve, parsed strictly on every call (no cache)."""
    raw = {p: json.dumps(layout.read_json(p)).encode() for p in layout.paths if p.endswith(".json")
           and layout.read_json(p) is not None}

    def read_json(path: str):
        data = raw.get(path)
        return None if data is None else parse_json(data, path, expect=expected_type(path))

    return read_json


def ours(corpus: dict[str, Layout]) -> None:
    views = {layout.repo: RepoView(layout.repo, tuple(layout.paths), _reader(layout)) for layout in corpus.values()}
    for layout in corpus.values():
        try:
            infer_manifest(layout.repo, layout.paths, _reader(layout), lambda repo, rev: views.get(repo))
        except ManifestError:
            pass  # a refusal is an answer too, and costs the same rules


def peer(corpus: dict[str, Layout]) -> None:
    for layout in corpus.values():
        list(filter_repo_objects(layout.paths, allow_patterns=ALLOW, ignore_patterns=IGNORE))


def timed(fn, corpus, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(corpus)
        out.append((time.perf_counter() - t0) / len(corpus))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--write-docs", action="store_true", help="print the docs/benchmarks.md section")
    args = parser.parse_args()
    corpus = load_all()
    ours(corpus), peer(corpus)  # warm imports and caches once
    t_ours, t_peer = timed(ours, corpus, args.repeat), timed(peer, corpus, args.repeat)
    med_ours, med_peer = statistics.median(t_ours) * 1e3, statistics.median(t_peer) * 1e3
    worst = max(t_ours) * 1e3
    print(f"corpus: {len(corpus)} repos, {sum(len(v.paths) for v in corpus.values())} files; {args.repeat} rounds; "
          f"python {platform.python_version()}")
    print(f"ours  (strict JSON + family rules + required sets): median {med_ours:.3f} ms/repo, worst round {worst:.3f} ms/repo")
    print(f"peer  (huggingface_hub filter_repo_objects):          median {med_peer:.3f} ms/repo")
    print(f"ratio ours/peer: {med_ours / med_peer:.1f}x; target < 50 ms/repo: {'met' if worst < 50 else 'NOT met'}")
    if args.write_docs:
        print(f"\n| corpus | ours, median ms/repo | worst round | huggingface_hub filter, ms/repo | ratio |\n"
              f"|---|---|---|---|---|\n| {len(corpus)} repos | {med_ours:.3f} | {worst:.3f} | {med_peer:.3f} | "
              f"{med_ours / med_peer:.1f}x |")


if __name__ == "__main__":
    main()
