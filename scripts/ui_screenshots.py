"""Screenshots of the `/ui` page for docs/: a small fleet (six nodes, every state), served by the real app under
uvicorn, photographed by headless Chromium (Debian's `chromium`).

    python scripts/ui_screenshots.py [--out docs]

Writes docs/ui-fleet.png (the fleet table) and docs/ui-model.png (a model page). Needs a checkout (it builds its
models with the test helpers) and `chromium` on PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shoot(url: str, out: Path, size: str, profile: Path) -> None:
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", f"--window-size={size}", "--hide-scrollbars",
                    f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)


def shrink(path: Path) -> None:
    """Keep docs/ small: a 128-colour palette PNG reads the same for a page of text (Pillow, when installed)."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=128)
    small.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ui-shots-") as tmp:
        work = Path(tmp)
        os.environ.update({"REGISTRY_HOME": str(work / "home"), "REGISTRY_SMOKE": "0", "REGISTRY_ACTOR": "ops",
                           "REGISTRY_NODE": "gpu-01"})
        os.environ.pop("REGISTRY_DATABASE_URL", None)
        from registry.config import Settings
        from registry.services.audit import audit
        from registry.services.context import Registry
        from registry.services.deploy import deploy
        from tests.conftest import write_json, write_safetensors
        from tests.serve_helpers import add_registered, make_tiny_repo, serve, set_state

        reg = Registry.open(Settings.from_env())
        base = make_tiny_repo(work / "src" / "base", big=False)
        add_registered(reg, base, "acme/encoder-base", smoke=True)
        adapter = work / "src" / "adapter"
        write_json(adapter / "adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": "acme/encoder-base",
                                                     "r": 8, "target_modules": ["query", "value"]})
        write_safetensors(adapter / "adapter_model.safetensors", {"base_model.model.layer.0.lora_A.weight": ("F32", [8, 8])})
        add_registered(reg, adapter, "acme/retriever-lora", smoke=True)
        other = make_tiny_repo(work / "src" / "other", big=False, seed=3)
        add_registered(reg, other, "team/reranker", smoke=True)
        disks = work / "disks"
        plan = [("gpu-01", "acme/retriever-lora", "hf-cache"), ("gpu-01", "team/reranker", "dir"),
                ("gpu-02", "acme/retriever-lora", "hf-cache"), ("gpu-03", "acme/retriever-lora", "hf-cache"),
                ("gpu-03", "acme/encoder-base", "dir"), ("gpu-04", "team/reranker", "dir"),
                ("gpu-05", "acme/encoder-base", "dir"), ("gpu-06", "team/reranker", "dir")]
        for node, name, layout in plan:
            deploy(reg, name, disks / node / name.replace("/", "--"), layout=layout, node=node)
        # by hand on gpu-03: a file edited; gpu-05's copy deleted; then each node verifies
        edited = disks / "gpu-03" / "acme--encoder-base" / "vocab.txt"
        edited.unlink()
        edited.write_text("edited on the node\n")
        shutil.rmtree(disks / "gpu-05")
        for node in ("gpu-01", "gpu-02", "gpu-03", "gpu-05"):
            audit(reg, node=node, verify=True)
        # a newer revision of team/reranker (older copies are stale), then a quarantine of the base's sibling
        (other / "vocab.txt").write_text("[PAD]\n[UNK]\nrerank\n")
        add_registered(reg, other, "team/reranker")
        deploy(reg, "team/reranker", disks / "gpu-06" / "team--reranker-new", layout="dir", node="gpu-06")
        quarantined = make_tiny_repo(work / "src" / "q", big=False, seed=9)
        add_registered(reg, quarantined, "team/classifier")
        deploy(reg, "team/classifier", disks / "gpu-04" / "team--classifier", layout="dir", node="gpu-04")
        set_state(reg, "team/classifier", "quarantined", "smoke: outputs differ between two runs")
        args.out.mkdir(parents=True, exist_ok=True)
        with serve(reg) as server:
            shoot(f"{server.url}/ui/", args.out / "ui-fleet.png", "1400,840", work / "p1")
            shoot(f"{server.url}/ui/models/acme/retriever-lora", args.out / "ui-model.png", "1400,1500", work / "p2")
        reg.close()
    for name in ("ui-fleet.png", "ui-model.png"):
        shrink(args.out / name)
    print(f"wrote {args.out / 'ui-fleet.png'} and {args.out / 'ui-model.png'}")


if __name__ == "__main__":
    main()
