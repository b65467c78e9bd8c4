"""Visualized BGE on a GPU, through the registry and as its README uses it (failure 3 of failure-modes.md).

    python3 bench/gpu_visualized_bge.py --out DIR      # on a CUDA machine with torch, torchvision, timm,
                                                       # einops, ftfy and FlagEmbedding's visual_bge importable

FlagEmbedding's `Visualized_BGE` never calls `eval()`: its EVA02-CLIP tower has patch dropout 0.5 and the text
tower dropout 0.1, so two calls on the same input differ. This script builds a Visualized BGE of the real
bge-base-en-v1.5 + EVA02-CLIP-B-16 architecture with random weights (the published .pth is not reachable
offline), saves it as `Visualized_base_en_v1.5.pth`, then:

- peer: loads it exactly as visual_bge's README does and encodes the same text and image twice;
- ours: `registry add` of the text repo and the visual weight, `registry register` on CUDA in float32 and in
  bfloat16 (the smoke runs twice and must agree), `registry load --check`, and `registry.load()` in-process,
  whose outputs are compared with the peer's model once the peer is put in eval mode by hand.

Writes DIR/visualized.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = "A red bus on a street."
TEXT_REPO, VISUAL = "acme/bge-base-en-v1.5", "acme/visualized-bge-base"
# BAAI/bge-base-en-v1.5's config.json (its published values), a small vocabulary for the tokenizer
TEXT_CONFIG = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12,
               "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu", "vocab_size": 30522,
               "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
               "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "bus", "on", "street", "."]


def cli(*args: str, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "registry", *args, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    out = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {"stdout": proc.stdout}
    out["_exit"], out["_stderr_tail"] = proc.returncode, proc.stderr[-1500:]
    return out


def write_text_repo(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TEXT_CONFIG))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                              "do_lower_case": True, "model_max_length": 512}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"cls_token": "[CLS]", "sep_token": "[SEP]",
                                                                "pad_token": "[PAD]", "unk_token": "[UNK]",
                                                                "mask_token": "[MASK]"}))
    # the text repo's own weights are never read by Visualized BGE (the .pth carries both towers)
    save_file({"unused": torch.zeros(4)}, str(folder / "model.safetensors"))


def build_weights(text_folder: Path, pth: Path) -> float:
    import torch
    from visual_bge.modeling import Visualized_BGE

    class Fresh(Visualized_BGE):
        def load_model(self, model_weight):  # noqa: ANN001 - random weights: nothing to load yet
            pass

    torch.manual_seed(0)
    model = Fresh(model_name_bge=str(text_folder), model_weight="none")
    pth.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, pth)
    params = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    return params / 1e6


def peer(text_folder: Path, pth: Path, image: Path) -> tuple[dict, object]:
    import torch
    from visual_bge.modeling import Visualized_BGE

    t0 = time.perf_counter()
    model = Visualized_BGE(model_name_bge=str(text_folder), model_weight=str(pth))  # as visual_bge's README
    load_ms = (time.perf_counter() - t0) * 1000
    with torch.no_grad():
        t1, t2 = model.encode(text=TEXT), model.encode(text=TEXT)
        i1, i2 = model.encode(image=str(image)), model.encode(image=str(image))
        model.eval()
        e1, e2 = model.encode(text=TEXT), model.encode(text=TEXT)
    return {
        "load_ms": round(load_ms, 1), "training_mode_as_loaded": True,
        "text_twice_max_diff": float((t1 - t2).abs().max()), "image_twice_max_diff": float((i1 - i2).abs().max()),
        "after_eval_text_twice_max_diff": float((e1 - e2).abs().max()),
    }, (model, e1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vbge-work"))
    args = parser.parse_args()
    import numpy as np
    import torch
    from PIL import Image

    work = args.work
    shutil.rmtree(work, ignore_errors=True)  # a fresh registry home and model every run
    text_folder = work / "bge-base-en-v1.5"  # the library picks its architecture from this name
    pth = work / "visual" / "Visualized_base_en_v1.5.pth"
    image = work / "image.png"
    write_text_repo(text_folder)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (56, 56, 3), dtype=np.uint8)).save(image)
    result: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    result["parameters_millions"] = round(build_weights(text_folder, pth), 1)
    result["pth_bytes"] = pth.stat().st_size
    result["peer"], (peer_model, peer_eval) = peer(text_folder, pth, image)

    env = {**os.environ, "REGISTRY_HOME": str(work / "home"), "REGISTRY_SMOKE": "0", "HF_HUB_OFFLINE": "1"}
    manifest = work / "visualized.toml"
    manifest.write_text(f'''schema = 1
name = "{VISUAL}"
family = "visualized-bge"

[[component]]
role = "visual"
files = ["{pth.name}"]

[[component]]
role = "config"
repo = "{TEXT_REPO}"
files = ["config.json"]

[[component]]
role = "tokenizer"
repo = "{TEXT_REPO}"
files = ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]

[smoke]
texts = ["{TEXT}"]
image = {{ width = 56, height = 56, seed = 0 }}
''')
    steps = {"add_text": cli("add", str(text_folder), "--name", TEXT_REPO, env=env),
             "add_visual": cli("add", str(pth.parent), "--name", VISUAL, "--manifest", str(manifest), env=env)}
    for dtype in ("float32", "bfloat16"):
        t0 = time.perf_counter()
        steps[f"register_{dtype}"] = cli("register", VISUAL, "--device", "cuda", "--dtype", dtype, env=env)
        steps[f"register_{dtype}"]["_wall_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        steps[f"check_{dtype}"] = cli("load", VISUAL, "--check", "--device", "cuda", "--dtype", dtype, env=env)
    result["ours"] = {k: {kk: v.get(kk) for kk in ("_exit", "state", "message", "smoke", "match", "ok", "problems",
                                                   "error", "_wall_ms", "_stderr_tail") if kk in v}
                      for k, v in steps.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "visualized.json").write_text(json.dumps(result, indent=2, default=str))
    if any(v["_exit"] for v in steps.values()):
        print(json.dumps(result, indent=2, default=str))
        return 1

    # the registry's loaded model against the peer's, once the peer is in eval mode (fp32, same weights)
    os.environ.update(env)
    import registry

    model, _tok = registry.load(VISUAL, device="cuda", dtype="float32")
    with torch.no_grad():
        ours = model.encode(text=TEXT)
    result["ours_vs_peer_eval_text_max_diff"] = float((ours.float() - peer_eval.float()).abs().max())
    result["ours_training_mode"] = bool(model.training)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "visualized.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
