"""LoRA adapters in the key layouts they are published in, built offline with the real libraries, and the
reference outputs of the family libraries' own loading (what the registry's must equal).

The vidore adapters (vidore/colqwen2-v0.1 and friends) were saved under transformers 4, whose Qwen2-VL text
decoder was ``model.layers.*``: their ``adapter_model.safetensors`` names its tensors
``base_model.model.model.layers.N.{self_attn,mlp}.*_proj.lora_{A,B}.weight`` and
``base_model.model.custom_text_proj.lora_{A,B}.weight`` (illuin-tech/colpali#424 shows them as
``model.layers.*.lora_*.default.weight | UNEXPECTED`` beside ``language_model.layers.* | MISSING``; colpali #414).
transformers 5 builds the decoder as ``language_model.layers.*``, so PEFT saves
``base_model.model.language_model.layers.N...`` today. We build one adapter and save it in both layouts.
Its config is colpali's training config (illuin-tech/colpali scripts/configs/qwen2/train_colqwen2_model.yaml:
r 32, alpha 32, dropout 0.1, gaussian init, FEATURE_EXTRACTION, colpali's target regex) as the PEFT of that
time wrote it (fewer fields than PEFT 0.20 writes).

Import the fixtures a module uses together with ``colqwen2_models`` from tests.models_helpers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.models_helpers import (COLPALI_TARGETS, QWEN_SPECIALS, TOKENIZER_FILES, _bpe_tokenizer, copy_files,
                                  load_base_model)

TRANSFORMERS5_TEXT = "base_model.model.language_model."
TRANSFORMERS4_TEXT = "base_model.model.model."
TEXTS = ("What is the revenue in 2023?", "hello world")


def published_adapter_config(base_name: str) -> dict[str, Any]:
    """adapter_config.json as vidore's adapters carry it (PEFT 0.11-0.12 fields), naming ``base_name``."""
    return {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": base_name, "bias": "none",
            "fan_in_fan_out": False, "inference_mode": False, "init_lora_weights": "gaussian",
            "layer_replication": None, "layers_pattern": None, "layers_to_transform": None, "loftq_config": {},
            "lora_alpha": 32, "lora_dropout": 0.1, "megatron_config": None, "megatron_core": "megatron.core",
            "modules_to_save": None, "peft_type": "LORA", "r": 32, "rank_pattern": {}, "revision": None,
            "target_modules": COLPALI_TARGETS, "task_type": "FEATURE_EXTRACTION", "use_dora": False,
            "use_rslora": False}


def _trained_lora(model: Any, config: Any, seed: int) -> Any:
    """get_peft_model, then B away from its zero init (as training leaves it), so the adapter changes outputs."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)  # A's gaussian init
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return peft_model


def rewrite_keys(folder: Path, old: str, new: str, *, keep_old: bool = False, drop: str | None = None) -> None:
    """Rename the tensors of ``folder``'s adapter file (``keep_old``: both layouts in one file; ``drop``: leave
    out the tensors whose name contains it)."""
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    tensors = load_file(str(path))
    out = {k.replace(old, new): v.clone() for k, v in tensors.items()}
    if keep_old:
        out.update(tensors)
    if drop:
        out = {k: v for k, v in out.items() if drop not in k}
    save_file(out, str(path))


def build_colqwen2_adapter(base_dir: Path, folder: Path, *, base_name: str, layout: str, seed: int = 7) -> Path:
    """colpali's LoRA over the tiny ColQwen2 in ``base_dir``, saved in ``layout`` ("transformers4": the published
    vidore key names; "transformers5": what PEFT writes today), with the base's tokenizer and processor files."""
    from peft import LoraConfig

    from registry.loaders.runtime import import_torch

    import_torch()
    fields = {k: v for k, v in published_adapter_config(base_name).items()
              if k in ("r", "lora_alpha", "lora_dropout", "init_lora_weights", "bias", "task_type", "target_modules")}
    peft_model = _trained_lora(load_base_model(base_dir, "colqwen2"), LoraConfig(**fields), seed)
    peft_model.save_pretrained(folder, save_embedding_layers=False)  # else PEFT asks the Hub about the base
    (folder / "README.md").unlink(missing_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(published_adapter_config(base_name), indent=2) + "\n")
    if layout == "transformers4":
        rewrite_keys(folder, TRANSFORMERS5_TEXT, TRANSFORMERS4_TEXT)
    elif layout != "transformers5":
        raise ValueError(f"layout {layout!r}")
    copy_files(base_dir, folder, TOKENIZER_FILES + ["preprocessor_config.json"])
    return folder


def copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- plain PEFT over transformers models ---------------------------------------------------------------

def build_tiny_qwen2_lm(folder: Path, *, seed: int = 0) -> Path:
    """A tiny Qwen2ForCausalLM (2 layers, 32 wide) with the Qwen BPE tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _bpe_tokenizer(folder, QWEN_SPECIALS, pad="<|endoftext|>", bos=None, eos="<|im_end|>")
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).eval().save_pretrained(folder)
    return folder


def build_causal_lm_lora(base_dir: Path, folder: Path, *, seed: int = 3) -> Path:
    """A CAUSAL_LM LoRA over every projection and lm_head, as trainers save it (``base_model.model.model.layers``)."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    from registry.loaders.runtime import import_torch

    import_torch()
    config = LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                        "lm_head"])
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), attn_implementation="eager").eval()
    peft_model = _trained_lora(model, config, seed)
    peft_model.peft_config["default"].base_model_name_or_path = "Qwen/Qwen2-0.5B"
    peft_model.save_pretrained(folder, save_embedding_layers=False)
    (folder / "README.md").unlink(missing_ok=True)
    copy_files(base_dir, folder, TOKENIZER_FILES)
    return folder


def build_qwen2_vl_lm_lora(colqwen2_base: Path, root: Path) -> tuple[Path, Path]:
    """A tiny Qwen2VLForConditionalGeneration (the tiny ColQwen2's config) and a plain LoRA over it (no task type:
    PEFT records ``auto_mapping``), saved in the transformers-4 layout ``base_model.model.model.layers``."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from registry.loaders.runtime import import_torch

    import_torch()
    from peft import LoraConfig

    base = root / "qwen2-vl"
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(Qwen2VLConfig.from_pretrained(str(colqwen2_base))).eval().save_pretrained(base)
    copy_files(colqwen2_base, base, TOKENIZER_FILES)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(base), attn_implementation="eager").eval()
    adapter = root / "qwen2-vl-lora"
    _trained_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), 5).save_pretrained(
        adapter, save_embedding_layers=False)
    rewrite_keys(adapter, "base_model.model.model.language_model.", "base_model.model.model.")
    return base, adapter


# ---- the libraries' own loading, for comparison -----------------------------------------------------------

def text_batch(folder: Path, texts: tuple[str, ...] = TEXTS) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))(list(texts), padding=True, return_tensors="pt")


def colpali_reference(base_dir: Path, adapter_dir: Path, batch: Any) -> Any:
    """colpali-engine's ``ColQwen2.from_pretrained(base)`` + ``PeftModel.from_pretrained(model, adapter)``."""
    import torch
    from peft import PeftModel

    from registry.loaders.colpali import colpali_class

    base = colpali_class("colqwen2").from_pretrained(str(base_dir), attn_implementation="eager").eval()
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    with torch.inference_mode():
        return model(**batch)


def colpali_documented(base_dir: Path, adapter_dir: Path, work: Path, batch: Any) -> Any:
    """colpali's documented loading: ``ColQwen2.from_pretrained(<adapter repo>)``, which loads the base its
    adapter_config.json names (here rewritten to the local base, as offline users do: colpali #129, #281)."""
    import torch

    from registry.loaders.colpali import colpali_class

    local = copy_adapter(adapter_dir, work)
    config = json.loads((local / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base_dir)
    (local / "adapter_config.json").write_text(json.dumps(config))
    model = colpali_class("colqwen2").from_pretrained(str(local), attn_implementation="eager").eval()
    with torch.inference_mode():
        return model(**batch)


def max_abs_difference(a: Any, b: Any) -> float:
    return float((a.float() - b.float()).abs().max())


@pytest.fixture(scope="session")
def colqwen2_layouts(colqwen2_models, tmp_path_factory) -> dict[str, Path]:
    """One trained adapter over the tiny ColQwen2 in the published (transformers4) and the current
    (transformers5) key layout; a file holding both layouts (mixed); one missing custom_text_proj's B."""
    root = tmp_path_factory.mktemp("colqwen2-layouts")
    base = colqwen2_models["base"]
    out = {"base": base}
    out["transformers5"] = build_colqwen2_adapter(base, root / "transformers5", base_name="vidore/colqwen2-base",
                                                  layout="transformers5")
    out["transformers4"] = copy_adapter(out["transformers5"], root / "transformers4")  # the same tensors, renamed
    rewrite_keys(out["transformers4"], TRANSFORMERS5_TEXT, TRANSFORMERS4_TEXT)
    out["mixed"] = copy_adapter(out["transformers5"], root / "mixed")
    rewrite_keys(out["mixed"], TRANSFORMERS5_TEXT, TRANSFORMERS4_TEXT, keep_old=True)
    out["missing"] = copy_adapter(out["transformers4"], root / "missing")
    rewrite_keys(out["missing"], "custom_text_proj.lora_B", "custom_text_proj.lora_B", drop="custom_text_proj.lora_B")
    return out
