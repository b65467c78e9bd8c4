"""An environment fault is not a model fault: a family library that cannot be imported (a module it needs is
missing, or of a version it does not work with) is exit 12 naming the library, its version and what to
install, and the model stays as it was. Only the model's own faults quarantine it.

Each case plants a broken package first on PYTHONPATH and runs the installed `registry` command in a
subprocess, as a user would meet it after `pip install -U` pulled in an incompatible release; then the plant
is removed and `registry register` succeeds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from registry.loaders.runtime import version_of
from tests.conftest import make_bert_like
from tests.models_helpers import SQLITE_ONLY, build_bge_m3_layout, write_manifest

pytestmark = [pytest.mark.ml, SQLITE_ONLY]

# the command pip installed into this environment, as a user runs it
REGISTRY = shutil.which("registry", path=os.path.dirname(sys.executable)) or shutil.which("registry")
NAME = "acme/bge-m3-tiny"


def registry_cmd(env: dict[str, str], *args: str, plant: Path | None = None) -> subprocess.CompletedProcess:
    assert REGISTRY, "the registry console script is not installed in this environment"
    full = {**os.environ, **env, "REGISTRY_SMOKE": "1"}
    full.pop("PYTHONPATH", None)
    if plant is not None:
        full["PYTHONPATH"] = str(plant)
    return subprocess.run([REGISTRY, *args], env=full, capture_output=True, text=True, timeout=600)


def _state(cli, name: str) -> str:
    return cli("show", name, "--json").json()["summary"]["state"]


@pytest.fixture(scope="module")
def bge_dir(tmp_path_factory):
    return build_bge_m3_layout(tmp_path_factory.mktemp("bge") / "bge-m3-tiny")


def plant_flagembedding(root: Path, module_file: str, line: str) -> Path:
    """A copy of the installed FlagEmbedding with ``line`` put first in one of its modules."""
    src = Path(importlib.util.find_spec("FlagEmbedding").submodule_search_locations[0])  # type: ignore[index,union-attr]
    dst = root / "FlagEmbedding"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    target = dst / module_file
    target.write_text(line + "\n" + target.read_text())
    return root


# transformers 5.24 removed this module, and FlagEmbedding 1.4.2 imports it: planted as a module that the
# installed transformers does not have either
MISSING_SUBMODULE = "from transformers.modeling_attn_mask_utils_gone import AttentionMaskConverter  # planted"


@pytest.mark.bge
def test_flagembedding_that_cannot_import_is_exit_12_and_the_model_stays_verified(registry_env, cli, bge_dir,
                                                                                   tmp_path):
    assert cli("add", bge_dir, "--name", NAME, "--no-smoke").exit_code == 0
    plant = plant_flagembedding(tmp_path / "plant", "abc/inference/AbsEmbedder.py", MISSING_SUBMODULE)
    r = registry_cmd(registry_env, "register", NAME, "--device", "cpu", "--json", plant=plant)
    assert r.returncode == 12, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    err = json.loads(r.stdout)
    assert err["error"] == "BrokenExtra" and err["kind"] == "broken-extra"
    assert err["details"]["library"] == "FlagEmbedding" and err["details"]["module"].startswith("transformers.")
    message = err["message"]
    assert f"FlagEmbedding {version_of('FlagEmbedding')} cannot be imported here" in message
    assert f"transformers {version_of('transformers')}" in message and "modeling_attn_mask_utils_gone" in message
    assert "pip install" in message and "nothing was quarantined" in message
    assert _state(cli, NAME) == "verified"
    # the same fault at the end of an add: the model is recorded verified, and the exit is still 12
    r = registry_cmd(registry_env, "add", str(bge_dir), "--name", NAME, "--device", "cpu", plant=plant)
    assert r.returncode == 12 and "FlagEmbedding" in r.stderr, r.stderr
    assert _state(cli, NAME) == "verified"
    # the environment fixed (the plant gone): the same command registers it
    r = registry_cmd(registry_env, "register", NAME, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert _state(cli, NAME) == "registered"


@pytest.mark.bge
def test_a_broken_reranker_does_not_stop_bge_m3(registry_env, cli, bge_dir, tmp_path):
    """The loader imports FlagEmbedding's M3 module only, not its package root (which imports every reranker)."""
    assert cli("add", bge_dir, "--name", NAME, "--no-smoke").exit_code == 0
    # the module through which transformers 5.24 broke `import FlagEmbedding` (it imports modeling_attn_mask_utils)
    plant = plant_flagembedding(tmp_path / "plant", "inference/reranker/decoder_only/models/modeling_minicpm_reranker.py",
                                MISSING_SUBMODULE)
    probe = subprocess.run(  # (with the registry's guard against a torchvision that cannot load here)
        [sys.executable, "-c", "from registry.loaders.runtime import import_torch; import_torch(); import FlagEmbedding"],
        env={**os.environ, "PYTHONPATH": str(plant)}, capture_output=True, text=True, timeout=300)
    assert probe.returncode != 0 and "modeling_attn_mask_utils_gone" in probe.stderr  # the package root is broken
    r = registry_cmd(registry_env, "register", NAME, "--device", "cpu", plant=plant)
    assert r.returncode == 0, r.stderr
    assert _state(cli, NAME) == "registered"


@pytest.mark.bge
def test_flagembedding_without_datasets(registry_env, cli, bge_dir, tmp_path):
    assert cli("add", bge_dir, "--name", NAME, "--no-smoke").exit_code == 0
    plant = tmp_path / "plant"
    plant.mkdir()
    # as if `datasets` were not installed: Python runs sitecustomize at start-up, before any import
    (plant / "sitecustomize.py").write_text("import sys\nsys.modules['datasets'] = None  # planted: not installed\n")
    r = registry_cmd(registry_env, "register", NAME, "--device", "cpu", "--json", plant=plant)
    assert r.returncode == 12, r.stdout + r.stderr
    err = json.loads(r.stdout)
    assert err["details"]["module"] == "datasets" and err["details"]["install"] == "pip install datasets"
    assert "it needs datasets, which is not installed" in err["message"]
    assert _state(cli, NAME) == "verified"
    assert registry_cmd(registry_env, "register", NAME, "--device", "cpu").returncode == 0


def test_visualized_bge_when_torchvision_cannot_load(registry_env, cli, tmp_path):
    """A torchvision built for another torch fails at import (`operator torchvision::nms does not exist`);
    Visualized BGE needs torchvision.ops: exit 12 naming torchvision and why, the model stays verified."""
    plant = tmp_path / "plant"
    (plant / "torchvision").mkdir(parents=True)
    (plant / "torchvision" / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')  # planted: a build for another torch\n")
    (plant / "visual_bge").mkdir()
    (plant / "visual_bge" / "__init__.py").write_text("")
    (plant / "visual_bge" / "modeling.py").write_text("from torchvision import ops  # as the real module does\n")
    assert cli("add", make_bert_like(tmp_path / "text"), "--name", "acme/bge-m3").exit_code == 0
    (tmp_path / "visual").mkdir()
    (tmp_path / "visual" / "Visualized_m3.pth").write_bytes(b"never unpickled: the library does not import")
    manifest = write_manifest(tmp_path / "v.toml", "acme/visualized", "visualized-bge", [
        {"role": "visual", "files": ["Visualized_m3.pth"]},
        {"role": "config", "repo": "acme/bge-m3", "files": ["config.json"]},
        {"role": "tokenizer", "repo": "acme/bge-m3", "files": ["vocab.txt", "tokenizer_config.json"]}])
    assert cli("add", tmp_path / "visual", "--name", "acme/visualized", "--manifest", manifest).exit_code == 0
    r = registry_cmd(registry_env, "register", "acme/visualized", "--device", "cpu", "--json", plant=plant)
    assert r.returncode == 12, r.stdout + r.stderr
    err = json.loads(r.stdout)
    assert err["details"]["library"] == "visual_bge" and err["details"]["module"] == "torchvision"
    assert "operator torchvision::nms does not exist" in err["message"]
    assert err["message"].startswith("visual_bge cannot be imported here: torchvision")
    assert _state(cli, "acme/visualized") == "verified"
