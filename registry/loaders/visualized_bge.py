"""Family ``visualized-bge``: FlagEmbedding's Visualized BGE (the ``visual_bge`` package of the
FlagEmbedding repository, research/visual_bge; not part of the PyPI wheel).

Components: the visual weight ``.pth`` (a pickle, read with ``weights_only``) and the text model's
``config.json`` + tokenizer. The code picks its architecture by substring of the text model's name
(``bge-m3``, ``bge-base-en-v1.5``), so the text folder is materialised under the repo's own name
(``BAAI--bge-m3``), never under a digest. It never calls ``eval()`` (patch dropout 0.5, text dropout
0.1: FlagEmbedding #659); this loader does, and the smoke proves two runs agree.
"""

from __future__ import annotations

import contextlib
from typing import Any

from registry.errors import BrokenExtra, MissingExtra, SmokeFailed
from registry.loaders.base import Loaded, LoadRequest, Outputs
from registry.loaders.checks import finalize
from registry.loaders.runtime import import_torch, require

KNOWN_TEXT_MODELS = ("bge-m3", "bge-base-en-v1.5")


def load(request: LoadRequest) -> Loaded:
    import_torch()
    text_folder = request.component_folder("config", "tokenizer")
    if not any(name in text_folder.name for name in KNOWN_TEXT_MODELS):
        raise SmokeFailed(f"{request.resolved.name}: the text model folder {text_folder.name!r} names none of "
                          f"{', '.join(KNOWN_TEXT_MODELS)}; Visualized BGE picks its architecture from that name",
                          details={"check": "components"})
    weights = [p for p in request.role_files("visual") if p.suffix == ".pth"]
    if len(weights) != 1:
        raise SmokeFailed(f"{request.resolved.name}: expected one visual .pth file, found {len(weights)}",
                          details={"check": "components"})
    try:
        modeling = require("visual_bge.modeling", "bge")
    except BrokenExtra:
        raise  # installed, but it (or torchvision, which it needs) cannot be imported here
    except MissingExtra as exc:
        raise MissingExtra("Visualized BGE needs the visual_bge package, which is not on PyPI: install it from the "
                           "FlagEmbedding repository (research/visual_bge: pip install -e .)",
                           details={"module": "visual_bge", "extra": "bge"}) from exc
    model = modeling.Visualized_BGE(model_name_bge=str(text_folder), model_weight=str(weights[0]))
    model.to(request.placement.device, dtype=request.placement.torch_dtype())
    # the library builds its attention mask in the dtype it recorded at construction (float32): keep it in step
    model.dtype = request.placement.torch_dtype()
    finalize(model, request.resolved.name)
    return Loaded("visualized-bge", model, getattr(model, "tokenizer", None), request.placement,
                  checks=["eval mode (the library never sets it), gradients off, nothing on meta"])


def smoke(loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs:
    torch = import_torch()
    out: Outputs = {}
    dtype = loaded.placement.torch_dtype()
    # encode() turns images into float32 tensors whatever the model's dtype: in bf16/fp16 that is a dtype
    # mismatch in the first conv (seen on an H200), so those run under autocast, as a user of the library must
    amp = (torch.autocast(device_type=loaded.placement.device.split(":")[0], dtype=dtype)
           if dtype != torch.float32 else contextlib.nullcontext())
    with torch.inference_mode(), amp:
        out["text_embeddings"] = torch.cat([loaded.model.encode(text=t) for t in texts]).float().cpu().numpy()
        if image is not None:
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".png") as f:  # the library reads images from paths
                image.save(f.name)
                out["image_embeddings"] = loaded.model.encode(image=f.name).float().cpu().numpy()
    return out
