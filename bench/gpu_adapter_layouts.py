"""A ColQwen2 adapter in the published vidore key layout (transformers 4's ``model.layers.*``), registered and
loaded through the registry, against colpali-engine's own loading of the same files, on one device and dtype.

    python bench/gpu_adapter_layouts.py [--device cuda] [--dtypes bfloat16,float32] [--out DIR]

For each dtype, in one process: a tiny ColQwen2 base and colpali's LoRA over it (tests/adapter_layouts.py),
``add`` both to a fresh registry, then **ours** = ``register_model`` (gate, load through
``PeftModel.from_pretrained`` with colpali's key mapping, the landing check, smoke twice + once without the
adapter, record) and ``load_model``; **peer** = ``ColQwen2.from_pretrained(base)`` + ``PeftModel.from_pretrained``
(and colpali's documented ``ColQwen2.from_pretrained(<adapter>)``). Both embed the same queries and image with
the registry's processor (``ColQwen2Processor``: the full image path where torchvision imports). Prints the
largest difference of the query and image embeddings and of the scores, and the times; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry.config import Settings  # noqa: E402
from registry.loaders.runtime import import_torch, library_versions, vision_available  # noqa: E402
from registry.loaders.smoke import SmokeInputs  # noqa: E402
from registry.services.context import Registry  # noqa: E402
from registry.services.load import load_model  # noqa: E402
from registry.services.register import register_model  # noqa: E402

from gpu_smoke import timed  # noqa: E402  (the same CUDA-synchronised timer)

NAME = "acme/colqwen2-v0.1-tiny"
BASE = "vidore/colqwen2-base"
TEXTS = ("What is the revenue in 2023?", "Which figure shows the architecture?")


def embed(model: Any, processor: Any, full: bool, image: Any, device: str) -> dict[str, Any]:
    torch = import_torch()
    with torch.inference_mode():
        if not full:  # no torchvision: the tokenizer's text batch, as the registry's text-only smoke
            return {"query_embeddings": model(**processor(list(TEXTS), padding=True, return_tensors="pt").to(device))}
        queries = model(**processor.process_queries(list(TEXTS)).to(device))
        docs = model(**processor.process_images([image]).to(device))
        return {"query_embeddings": queries, "image_embeddings": docs,
                "scores": processor.score_multi_vector(queries.float(), docs.float())}


def peer(base_dir: Path, adapter_dir: Path, device: str, dtype: str, attn: str) -> Any:
    from peft import PeftModel

    from registry.loaders.colpali import colpali_class

    torch = import_torch()
    model = colpali_class("colqwen2").from_pretrained(str(base_dir), dtype=getattr(torch, dtype), device_map=device,
                                                     attn_implementation=attn).eval()
    return PeftModel.from_pretrained(model, str(adapter_dir)).eval()


def documented(base_dir: Path, adapter_dir: Path, work: Path, device: str, dtype: str, attn: str) -> Any:
    import shutil

    from registry.loaders.colpali import colpali_class

    torch = import_torch()
    local = work / "documented"
    shutil.copytree(adapter_dir, local)
    config = json.loads((local / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base_dir)
    (local / "adapter_config.json").write_text(json.dumps(config))
    return colpali_class("colqwen2").from_pretrained(str(local), dtype=getattr(torch, dtype), device_map=device,
                                                    attn_implementation=attn).eval()


def difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    return {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}


def run(device: str, dtype: str, work: Path, base_dir: Path, adapter_dir: Path) -> dict[str, Any]:
    from tests.models_helpers import add_base_and_adapter

    os.environ.update({"REGISTRY_HOME": str(work / "home"), "REGISTRY_SMOKE": "0",
                       "REGISTRY_DATABASE_URL": f"sqlite:///{work / 'home' / 'catalog.db'}"})
    reg = Registry.open(Settings.from_env())
    try:
        add_base_and_adapter(reg, work, base=base_dir, adapter=adapter_dir, family="colqwen2", base_family="colqwen2",
                             base_name=BASE, name=NAME, image=(56, 56, 0))
        registered, register_ms = timed(lambda: register_model(reg, NAME, device=device, dtype=dtype))
        load_model(reg, NAME, device=device, dtype=dtype)  # warm: imports, CUDA context, page cache
        ours, ours_ms = timed(lambda: load_model(reg, NAME, device=device, dtype=dtype))
    finally:
        reg.close()
    model, processor = ours.model, ours.processor
    full = bool(ours.loaded.extra.get("processor"))
    attn = model.get_base_model().config._attn_implementation
    target = ours.loaded.placement.device
    image = SmokeInputs(TEXTS, (56, 56, 0)).picture()
    ours_out = embed(model, processor, full, image, target)
    peer(base_dir, adapter_dir, target, dtype, attn)  # warm
    reference, peer_ms = timed(lambda: peer(base_dir, adapter_dir, target, dtype, attn))
    doc = documented(base_dir, adapter_dir, work, target, dtype, attn)
    s = registered.smoke
    return {"device": s.device, "dtype": dtype, "attention": attn, "full_processor_path": full,
            "state": registered.state, "checks": list(s.checks), "notes": list(s.notes),
            "output_shapes": s.output_shapes, "adapter_effect": s.adapter_effect,
            "register_ms": round(register_ms, 1), "register_load_ms": s.load_ms, "smoke_run_ms": s.wall_ms,
            "load_ms": round(ours_ms, 1), "peer_load_ms": round(peer_ms, 1),
            "max_difference_vs_peft_from_pretrained": difference(ours_out, embed(reference, processor, full, image,
                                                                                 target)),
            "max_difference_vs_documented_loading": difference(ours_out, embed(doc, processor, full, image, target))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from tests.adapter_layouts import build_colqwen2_adapter
    from tests.models_helpers import build_colqwen2_base

    import_torch()
    results = {"libraries": library_versions(), "vision": vision_available(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base_dir = build_colqwen2_base(root / "base")
        adapter_dir = build_colqwen2_adapter(base_dir, root / "adapter", base_name=BASE, layout="transformers4")
        for dtype in args.dtypes.split(","):
            work = root / dtype
            work.mkdir()
            results["runs"].append(run(args.device, dtype, work, base_dir, adapter_dir))
    for r in results["runs"]:
        print(f"{r['device']} {r['dtype']} ({r['attention']}, full processor path: {r['full_processor_path']}): "
              f"{r['state']}; register {r['register_ms']} ms (load {r['register_load_ms']}, smoke run "
              f"{r['smoke_run_ms']}); load {r['load_ms']} ms vs peer {r['peer_load_ms']} ms; max |ours - PEFT| "
              f"{r['max_difference_vs_peft_from_pretrained']}; max |ours - documented| "
              f"{r['max_difference_vs_documented_loading']}; adapter effect {r['adapter_effect']}")
        print("  " + "\n  ".join(r["checks"] + r["notes"]))
    print(json.dumps(results["libraries"]))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_adapter_layouts.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
