"""Family ``sentence-transformers``: ``SentenceTransformer`` over the folder (``modules.json``).

sentence-transformers reports no loading info, so the first module's weights are compared with the
saved tensor names."""

from __future__ import annotations

from typing import Any

from registry.loaders.base import Loaded, LoadRequest, Outputs
from registry.loaders.checks import check_state_keys, finalize
from registry.loaders.runtime import import_torch, require


def load(request: LoadRequest) -> Loaded:
    import_torch()
    st = require("sentence_transformers")
    folder = request.component_folder("config", "weights")
    placement = request.placement
    kwargs: dict[str, Any] = {"dtype": placement.torch_dtype()}
    if placement.device == "cpu":
        kwargs["attn_implementation"] = "eager"
    model = st.SentenceTransformer(str(folder), device=placement.device, local_files_only=True, model_kwargs=kwargs)
    first = model[0]
    inner = getattr(first, "auto_model", None) or getattr(first, "model", None)
    weights = [p for p in request.role_files("weights") if p.name.endswith((".safetensors", ".bin"))]
    if inner is not None and weights:
        check_state_keys(inner, weights, request.resolved.expected_missing_keys, request.resolved.name)
    finalize(model, request.resolved.name)
    return Loaded("sentence-transformers", model, model.tokenizer, placement,
                  checks=["first module's weights match the saved tensors (no missing or unexpected keys)",
                          "eval mode, gradients off, nothing on meta"])


def smoke(loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs:
    torch = import_torch()
    with torch.inference_mode():
        emb = loaded.model.encode(list(texts), convert_to_tensor=True, batch_size=len(texts))
    return {"embeddings": emb.float().cpu().numpy()}
