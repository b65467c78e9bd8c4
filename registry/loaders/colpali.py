"""Families ``colqwen2`` and ``colpali``: colpali-engine's ``ColQwen2`` / ``ColPali`` + processor, over the
weights (a merged model) or over the pinned base with the LoRA adapter (``vidore/colqwen2-v0.1``).

Where torchvision cannot be imported (a CPU torch beside PyPI's CUDA torchvision), colpali-engine's
package import fails because its processors need it; the model classes themselves do not, so they are
loaded from their module files and the smoke runs on text queries only (the result says so).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from registry.errors import MissingExtra, SmokeFailed
from registry.loaders import adapter, auto
from registry.loaders.base import Loaded, LoadRequest, Outputs
from registry.loaders.runtime import import_torch, vision_available

CLASSES = {"colqwen2": ("ColQwen2", "ColQwen2Processor", "qwen2/colqwen2/modeling_colqwen2.py"),
           "colpali": ("ColPali", "ColPaliProcessor", "paligemma/colpali/modeling_colpali.py")}
EMBED_DIM = 128


def colpali_class(family: str) -> Any:
    model_name, _proc, module_file = CLASSES[family]
    import_torch()
    if importlib.util.find_spec("colpali_engine") is None:  # importing it would need torchvision
        raise MissingExtra.for_module("colpali_engine", "colpali")
    if vision_available():
        return getattr(importlib.import_module("colpali_engine.models"), model_name)
    key = f"registry.loaders._colpali_{family}"
    if key not in sys.modules:
        root = importlib.util.find_spec("colpali_engine").submodule_search_locations[0]  # type: ignore[union-attr]
        spec = importlib.util.spec_from_file_location(key, f"{root}/models/{module_file}")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        sys.modules[key] = module
    return getattr(sys.modules[key], model_name)


def _processor(family: str, request: LoadRequest) -> tuple[Any, bool]:
    """(processor, True) with torchvision; else (tokenizer, False) for text-only queries."""
    folder = request.component_folder("processor", "tokenizer", "weights", "base")
    if not vision_available():
        return auto.load_tokenizer(request.component_folder("tokenizer", "processor", "weights", "base")), False
    models = importlib.import_module("colpali_engine.models")
    cls = getattr(models, CLASSES[family][1])
    try:
        return cls.from_pretrained(str(folder), local_files_only=True), True
    except (OSError, ValueError, TypeError) as exc:
        if family != "colqwen2":
            raise SmokeFailed(f"{request.resolved.name}: cannot build {cls.__name__}: {exc}",
                              details={"check": "processor"}) from exc
        # transformers 5's Qwen2VLProcessor wants a video processor that colqwen2 repos do not ship
        from transformers import AutoTokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        return cls(image_processor=Qwen2VLImageProcessor.from_pretrained(str(folder)),
                   tokenizer=AutoTokenizer.from_pretrained(str(folder), local_files_only=True),
                   video_processor=Qwen2VLVideoProcessor()), True


def load(request: LoadRequest) -> Loaded:
    family = request.resolved.family
    cls = colpali_class(family)
    label = request.resolved.name
    if request.has_role("adapter"):
        base = auto.from_pretrained(cls, request.component_folder("base"), request.placement,
                                    expected_missing=request.resolved.expected_missing_keys,
                                    label=f"{label} base {request.base_label()}")
        # colpali-engine's class as the base, so PEFT maps the transformers-4 layout through its
        # _checkpoint_conversion_mapping (colpali #414, #424); then the registry's own landing check
        model, landing = adapter.apply_adapter(base, request.component_folder("adapter"),
                                               pinned_base=request.base_label(), label=label)
        without, checks = model.disable_adapter, adapter.adapter_checks(request, landing, cls.__name__)
    else:
        model = auto.from_pretrained(cls, request.component_folder("weights", "config"), request.placement,
                                     expected_missing=request.resolved.expected_missing_keys, label=label)
        without, checks = None, ["no missing or unexpected weights", "eval mode, gradients off, nothing on meta"]
    processor, full = _processor(family, request)
    notes = [] if full else ["torchvision unavailable: smoke on text queries through the tokenizer only, no image"]
    return Loaded(family, model, processor, request.placement, checks=checks, notes=notes, without_adapter=without,
                  extra={"processor": full})


def _embed(model: Any, batch: Any) -> Any:
    torch = import_torch()
    with torch.inference_mode():
        return model(**batch)


def smoke(loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs:
    device = loaded.placement.device
    if loaded.extra.get("processor"):
        queries = _embed(loaded.model, loaded.processor.process_queries(list(texts)).to(device))
    else:
        batch = loaded.processor(list(texts), padding=True, return_tensors="pt").to(device)
        queries = _embed(loaded.model, batch)
    out: Outputs = {"query_embeddings": queries.float().cpu().numpy()}
    if queries.shape[-1] != EMBED_DIM:
        raise SmokeFailed(f"query embeddings have dimension {queries.shape[-1]}, expected {EMBED_DIM}",
                          details={"check": "shapes"})
    if image is not None and loaded.extra.get("processor"):
        docs = _embed(loaded.model, loaded.processor.process_images([image]).to(device))
        out["image_embeddings"] = docs.float().cpu().numpy()
        out["scores"] = loaded.processor.score_multi_vector(queries.float(), docs.float()).float().cpu().numpy()
    return out
