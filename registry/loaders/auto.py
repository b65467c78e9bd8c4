"""Family ``transformers``: ``Auto*`` classes over the model's own folder. Safetensors when present;
pickles only through ``torch.load(weights_only=True)`` (transformers' ``weights_only``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.loaders.base import Loaded, LoadRequest, Outputs
from registry.loaders.checks import check_loading_info, finalize
from registry.loaders.runtime import Placement, import_torch, require


def from_pretrained(cls: Any, folder: Path, placement: Placement, *, expected_missing: tuple[str, ...], label: str,
                    **kwargs: Any) -> Any:
    """``cls.from_pretrained`` on a local folder, its loading report checked, then placed and finalized."""
    import_torch()
    has_safetensors = any(folder.glob("*.safetensors"))
    if placement.device == "cpu" or placement.dtype == "float32":
        # SDPA gives NaN rows for left-padded inputs in float32 (failure-modes.md §1; seen on CPU, and on an
        # H100 with tiny ColQwen2): eager attention there, SDPA for bf16/fp16 on the GPU
        kwargs.setdefault("attn_implementation", "eager")
    model, info = cls.from_pretrained(
        str(folder), output_loading_info=True, weights_only=True, use_safetensors=has_safetensors or None,
        dtype=placement.torch_dtype(), local_files_only=True, **kwargs,
    )
    check_loading_info(info, expected_missing, label)
    model.to(placement.device)
    finalize(model, label)
    return model


def load_tokenizer(folder: Path, **kwargs: Any) -> Any:
    transformers = require("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)


def load(request: LoadRequest, *, model_class: Any = None, **kwargs: Any) -> Loaded:
    transformers = require("transformers")
    folder = request.component_folder("weights", "config")
    model = from_pretrained(model_class or transformers.AutoModel, folder, request.placement,
                            expected_missing=request.resolved.expected_missing_keys, label=request.resolved.name,
                            **kwargs)
    tokenizer = load_tokenizer(request.component_folder("tokenizer")) if request.has_role("tokenizer") else None
    return Loaded("transformers", model, tokenizer, request.placement,
                  checks=["no missing or unexpected weights (transformers' loading report)",
                          "eval mode, gradients off, nothing on meta"])


def encode(model: Any, tokenizer: Any, texts: tuple[str, ...], device: str) -> Outputs:
    """Hidden states of the fixed texts, padding zeroed, as float32 numpy (and the mean-pooled vectors)."""
    torch = import_torch()
    if tokenizer is None:
        from registry.errors import SmokeFailed

        raise SmokeFailed("the model has no tokenizer component: the smoke needs one to encode its texts",
                          details={"check": "components"})
    batch = tokenizer(list(texts), padding=True, return_tensors="pt").to(device)
    with torch.inference_mode():
        out = model(**batch)
    mask = batch["attention_mask"].unsqueeze(-1)
    logits = getattr(out, "logits", None)
    if logits is not None and getattr(out, "last_hidden_state", None) is None:  # a *ForCausalLM & co (a LoRA
        return {"logits": (logits * mask.to(logits.dtype)).float().cpu().numpy()}  # for it may adapt lm_head)
    hidden = out[0] if isinstance(out, (tuple, list)) else getattr(out, "last_hidden_state", out)
    mask = mask.to(hidden.dtype)
    hidden = hidden * mask
    pooled = hidden.sum(1) / mask.sum(1)
    return {"last_hidden_state": hidden.float().cpu().numpy(), "mean_pooled": pooled.float().cpu().numpy()}


def smoke(loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs:
    return encode(loaded.model, loaded.processor, texts, loaded.placement.device)
