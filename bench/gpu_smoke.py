"""Registration on a GPU, measured against the peer: the plain library load + one inference.

For each family: ``register`` (gate + fast verify + materialise + load + checks + smoke twice + record)
and, side by side in the same process, what a user does without the registry (the family library's
own ``from_pretrained`` + one forward). Prints a table with the ratio and writes JSON.

    python bench/gpu_smoke.py [--device cuda] [--big] [--minilm DIR] [--out DIR]

``--big`` adds a ColQwen2 of vidore/colqwen2-base's size (Qwen2-VL-2B dimensions, random weights,
bf16, ~2.2 B parameters) added and registered through the registry: the measured cost of registering
a 2-3 B model. ``--minilm`` takes a folder of all-MiniLM-L6-v2 (the full repo, or the fp16 copy that
fits a device call).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.config import Settings  # noqa: E402
from registry.loaders.runtime import import_torch, library_versions, vision_available  # noqa: E402
from registry.services.add import add_folder  # noqa: E402
from registry.services.context import Registry  # noqa: E402
from registry.services.register import register_model  # noqa: E402


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    torch = import_torch()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, (time.perf_counter() - start) * 1000


def drop_page_cache(cold: bool) -> None:
    """Best effort (root only): read weights from disk, not memory, for the large model."""
    if cold:
        os.system("sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null")


def peer_minilm(folder: Path, device: str, dtype: str) -> None:
    import sentence_transformers

    torch = import_torch()
    m = sentence_transformers.SentenceTransformer(str(folder), device=device, model_kwargs={"dtype": getattr(torch, dtype)})
    m.encode(["What is the capital of France?"], convert_to_tensor=True)  # the inferred manifest's smoke text


def peer_colqwen2(base: Path, adapter: Path | None, device: str, dtype: str) -> None:
    torch = import_torch()
    from colpali_engine.models import ColQwen2, ColQwen2Processor
    from PIL import Image

    model = ColQwen2.from_pretrained(str(base), dtype=getattr(torch, dtype)).to(device).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    try:
        processor = ColQwen2Processor.from_pretrained(str(adapter or base))
    except (OSError, ValueError, TypeError):
        from transformers import AutoTokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        folder = str(adapter or base)
        processor = ColQwen2Processor(image_processor=Qwen2VLImageProcessor.from_pretrained(folder),
                                      tokenizer=AutoTokenizer.from_pretrained(folder),
                                      video_processor=Qwen2VLVideoProcessor())
    with torch.inference_mode():
        q = model(**processor.process_queries(["What is the revenue in 2023?"]).to(device))
        d = model(**processor.process_images([Image.new("RGB", (56, 56), (120, 30, 200))]).to(device))
        processor.score_multi_vector(q.float(), d.float())


def peer_bge(folder: Path, device: str, dtype: str) -> None:
    from FlagEmbedding import BGEM3FlagModel

    m = BGEM3FlagModel(str(folder), use_fp16=dtype == "float16", use_bf16=dtype == "bfloat16", devices=[device])
    m.encode(["What is the capital of France?"], return_dense=True, return_sparse=True, return_colbert_vecs=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--minilm", type=Path)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")))
    args = ap.parse_args()
    torch = import_torch()
    from registry.loaders.runtime import place
    from tests import models_helpers as mh

    device = place(args.device).device
    work = Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    reg = Registry.open(Settings.from_env({"REGISTRY_HOME": str(work / "home")}))
    src = work / "src"
    rows: list[dict[str, Any]] = []
    info = {"device": torch.cuda.get_device_name(0) if device != "cpu" else "cpu", "vision": vision_available(),
            "libraries": library_versions()}
    print(json.dumps(info), flush=True)

    def case(label: str, name: str, dtype: str, peer: Callable[[], None] | None, *, cold: bool = False) -> None:
        """Ours twice (the first pays imports and kernel set-up; the second is compared), then the peer twice."""
        def ours() -> Any:
            drop_page_cache(cold)
            return timed(lambda: register_model(reg, name, device=args.device, dtype=dtype))

        try:
            _, first_ms = ours()
            result, ours_ms = ours()
            s = result.smoke
            row = {"case": label, "state": result.state, "device": s.device, "dtype": s.dtype,
                   "register_first_ms": round(first_ms, 1), "register_ms": round(ours_ms, 1), "load_ms": s.load_ms,
                   "first_smoke_ms": s.first_ms, "smoke_ms": s.wall_ms, "inputs": s.inputs, "shapes": s.output_shapes,
                   "fingerprint": s.fingerprint, "notes": list(s.notes), "peer_ms": None, "ratio": None}
            if peer is not None:
                try:
                    peer()  # warm, as ours was
                    drop_page_cache(cold)
                    _, peer_ms = timed(peer)
                    row.update(peer_ms=round(peer_ms, 1), ratio=round(ours_ms / peer_ms, 2))
                except Exception as exc:  # noqa: BLE001 - the peer's own failure is a result too
                    row["peer_error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other families
            rows.append({"case": label, "error": f"{type(exc).__name__}: {exc}"[:600]})
        print(json.dumps(rows[-1]), flush=True)

    # all-MiniLM-L6-v2 in fp32 and bf16
    if args.minilm:
        add_folder(reg, args.minilm, "bench/all-MiniLM-L6-v2")
        for dtype in ("float32", "bfloat16"):
            case(f"all-MiniLM-L6-v2 {dtype}", "bench/all-MiniLM-L6-v2", dtype,
                 lambda d=dtype: peer_minilm(args.minilm, device, d))
    # tiny ColQwen2 + LoRA (full processor path with the image where torchvision works)
    base = mh.build_colqwen2_base(src / "colqwen2-base")
    adapter = mh.build_lora_adapter(mh.load_base_model(base, "colqwen2"), src / "colqwen2-lora",
                                    targets=mh.COLPALI_TARGETS, base_name="./models/colqwen2-base")
    mh.copy_files(base, adapter, mh.TOKENIZER_FILES + ["preprocessor_config.json"])
    mh.add_base_and_adapter(reg, work, base=base, adapter=adapter, family="colqwen2", base_family="colqwen2",
                            base_name="tiny/colqwen2-base", name="tiny/colqwen2-lora", image=(56, 56, 0))
    case("tiny ColQwen2 + LoRA float32", "tiny/colqwen2-lora", "float32",
         lambda: peer_colqwen2(base, adapter, device, "float32"))
    # tiny BGE-M3 layout
    bge = mh.build_bge_m3_layout(src / "bge-m3-tiny")
    add_folder(reg, bge, "tiny/bge-m3")
    case("tiny BGE-M3 float32", "tiny/bge-m3", "float32", lambda: peer_bge(bge, device, "float32"))
    # tiny BERT + LoRA (peft family) and pinned remote code: no peer (registry-only guarantees)
    bert = mh.build_tiny_bert(src / "bert")
    lora = mh.build_lora_adapter(mh.load_base_model(bert, "transformers"), src / "bert-lora", targets=mh.BERT_TARGETS)
    mh.copy_files(bert, lora, mh.TOKENIZER_FILES + ["vocab.txt"])
    mh.add_base_and_adapter(reg, work, base=bert, adapter=lora, family="peft", base_family="transformers",
                            base_name="tiny/bert", name="tiny/bert-lora")
    case("tiny BERT + LoRA float32", "tiny/bert-lora", "float32", None)
    rc = mh.build_remote_code_model(src / "remote")
    add_folder(reg, rc, "tiny/remote", manifest_file=mh.remote_code_manifest(work / "rc.toml", rc, "tiny/remote", pin=True))
    case("tiny remote code float32", "tiny/remote", "float32", None)
    # a colqwen2-base-sized model: the cost of registering a 2-3 B model
    if args.big:
        big = src / "colqwen2-2b"
        _, build_ms = timed(lambda: mh.build_colqwen2_base(big, dims=mh.QWEN2_VL_2B, device=device, dtype="bfloat16"))
        size = sum(p.stat().st_size for p in big.iterdir())
        manifest = mh.write_manifest(work / "big.toml", "synthetic/colqwen2-2b", "colqwen2", [
            {"role": "config", "files": ["config.json"]}, {"role": "weights", "patterns": ["model*.safetensors*"]},
            {"role": "tokenizer", "files": mh.TOKENIZER_FILES}, {"role": "processor", "files": ["preprocessor_config.json"]}],
            image=(56, 56, 0))
        _, add_ms = timed(lambda: add_folder(reg, big, "synthetic/colqwen2-2b", manifest_file=manifest))
        case("ColQwen2 2.2B (synthetic) bfloat16", "synthetic/colqwen2-2b", "bfloat16",
             lambda: peer_colqwen2(big, None, device, "bfloat16"), cold=True)
        rows[-1].update({"bytes": size, "add_ms": round(add_ms, 1), "build_ms": round(build_ms, 1),
                         "add_gb_per_s": round(size / add_ms / 1e6, 2)})
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "gpu_smoke.json").write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    print(f"\n{'case':38} {'state':10} {'device':28} {'register ms':>11} {'load':>8} {'smoke':>7} {'peer ms':>8} "
          f"{'ratio':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:38} ERROR {r['error'][:200]}")
            continue
        print(f"{r['case']:38} {r['state']:10} {r['device'][:28]:28} {r['register_ms']:>11.0f} {r['load_ms']:>8.0f} "
              f"{r['smoke_ms']:>7.1f} {r['peer_ms'] or 0:>8.0f} {r['ratio'] or 0:>6}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
