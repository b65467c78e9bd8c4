"""Family ``bge-m3``: FlagEmbedding ``BGEM3FlagModel`` with its dense, sparse and ColBERT heads.

FlagEmbedding loads the two heads only if both files exist, and otherwise initialises both at random
with an INFO line; the gate requires both (``REQUIRED_FILES``) and this loader proves the loaded head
weights equal the files (read with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

from typing import Any


from registry.errors import SmokeFailed
from registry.loaders.base import Loaded, LoadRequest, Outputs
from registry.loaders.checks import check_state_keys, finalize
from registry.loaders.runtime import import_torch, require

HEADS = ("colbert_linear", "sparse_linear")
M3_MODULE = "FlagEmbedding.inference.embedder.encoder_only.m3"  # BGEM3FlagModel is its M3Embedder

# numpy comes with the `ml` extra, not the core: a mirror host gets MissingExtra, not ImportError
np = require("numpy", "ml")


def load(request: LoadRequest) -> Loaded:
    torch = import_torch()
    # only the M3 module: FlagEmbedding's package root imports every reranker it ships, and one of them
    # breaking under a new transformers release must not stop BGE-M3
    m3_module = require(M3_MODULE, "bge", without_package_inits=True)
    folder = request.component_folder("weights", "config")
    placement = request.placement
    m3 = m3_module.M3Embedder(str(folder), use_fp16=placement.dtype == "float16",
                             use_bf16=placement.dtype == "bfloat16", devices=[placement.device],
                             normalize_embeddings=True)
    inner = m3.model  # EncoderOnlyEmbedderM3ModelForInference
    weights = [p for p in request.role_files("weights") if p.name.endswith((".safetensors", ".bin"))]
    check_state_keys(inner.model, weights, request.resolved.expected_missing_keys, request.resolved.name)
    for head in HEADS:
        saved = torch.load(folder / f"{head}.pt", map_location="cpu", weights_only=True)
        module = getattr(inner, head)
        for key, value in saved.items():
            if not torch.equal(module.state_dict()[key].float().cpu(), value.float()):
                raise SmokeFailed(f"{request.resolved.name}: {head}.{key} differs from {head}.pt: the head was "
                                  "initialised at random instead of loaded", details={"check": "heads"})
    inner.to(placement.device)
    finalize(inner, request.resolved.name)
    return Loaded("bge-m3", m3, m3.tokenizer, placement,
                  checks=["encoder weights match the saved tensors", "colbert and sparse heads equal their files",
                          "eval mode, gradients off, nothing on meta"])


def smoke(loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs:
    torch = import_torch()
    with torch.inference_mode():
        out = loaded.model.encode(list(texts), batch_size=len(texts), return_dense=True, return_sparse=True,
                                  return_colbert_vecs=True)
    dense = np.asarray(out["dense_vecs"], dtype=np.float32)
    # lexical weights are {token id: weight}; fix their order so the fingerprint is stable
    sparse = np.asarray([[float(k), float(v)] for row in out["lexical_weights"] for k, v in sorted(row.items())],
                        dtype=np.float32).reshape(-1, 2)
    colbert = np.concatenate([np.asarray(v, dtype=np.float32) for v in out["colbert_vecs"]], axis=0)
    if dense.shape[0] != len(texts):
        raise SmokeFailed(f"bge-m3 returned {dense.shape[0]} dense vectors and {len(sparse)} sparse weights for "
                          f"{len(texts)} texts", details={"check": "shapes"})
    return {"dense_vecs": dense, "lexical_weights": sparse, "colbert_vecs": colbert}
