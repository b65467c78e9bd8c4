"""Builders of tiny real models, made offline with the real libraries (see failure-modes.md,
"Building test models offline"). Each returns the folder it wrote; nothing is downloaded.

torch & co are imported inside the functions, after the registry's torchvision guard (a CPU torch
with a CUDA torchvision from PyPI cannot import it, and transformers would try).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry.loaders.runtime import import_torch

SENTENCES = [
    "What is the capital of France?", "Paris is the capital of France.", "A tiny model for tests.",
    "hello world", "the quick brown fox jumps over the lazy dog", "retrieval of documents and images",
]
# colpali-engine's LoRA target regex for ColQwen2 / ColPali adapters.
COLPALI_TARGETS = (r"(.*(model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$"
                   r"|.*(custom_text_proj).*$)")
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _bpe_tokenizer(folder: Path, specials: list[str], *, pad: str, bos: str | None, eos: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(SENTENCES * 4, trainers.BpeTrainer(vocab_size=280, special_tokens=specials,
                                                                show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, eos_token=eos, bos_token=bos,
                                   padding_side="left")
    fast.save_pretrained(folder)
    return fast


# Qwen2-VL-2B's dimensions (what vidore/colqwen2-base is built on), for the GPU cost estimate.
QWEN2_VL_2B = dict(text=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                             num_key_value_heads=2, vocab_size=151936, mrope_section=[16, 24, 24]),
                   vision=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4))
TINY_QWEN = dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=None, mrope_section=[2, 3, 3]),
                 vision=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2))


def build_colqwen2_base(folder: Path, *, seed: int = 0, dims: dict[str, dict[str, Any]] = TINY_QWEN,
                        device: str = "cpu", dtype: str = "float32") -> Path:
    """A ColQwen2 with random weights + its tokenizer: ~180k parameters by default (text 64 wide, 2 layers;
    vision depth 2); with ``dims=QWEN2_VL_2B`` the size of vidore/colqwen2-base (~2.2 B, built on ``device``)."""
    torch = import_torch()
    from transformers import Qwen2VLConfig

    from registry.loaders.colpali import colpali_class

    tokenizer = _bpe_tokenizer(folder, QWEN_SPECIALS, pad="<|endoftext|>", bos=None, eos="<|im_end|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = dict(dims["text"])
    mrope = text.pop("mrope_section")
    text["vocab_size"] = text["vocab_size"] or len(tokenizer)
    cfg = Qwen2VLConfig(
        text_config=dict(**text, max_position_embeddings=512, rope_scaling={"type": "mrope", "mrope_section": mrope},
                         bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(**dims["vision"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = colpali_class("colqwen2")(cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)
    _qwen_processor_files(folder)
    return folder


def _qwen_processor_files(folder: Path) -> None:
    """The preprocessor config a ColQwen2Processor reads (small pixel budget: a 56x56 image = 4 patches)."""
    proc = {"image_processor_type": "Qwen2VLImageProcessor", "processor_class": "ColQwen2Processor",
            "min_pixels": 56 * 56, "max_pixels": 112 * 112, "patch_size": 14, "temporal_patch_size": 2,
            "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_resize": True,
            "do_rescale": True, "do_normalize": True, "do_convert_rgb": True, "rescale_factor": 1 / 255}
    (folder / "preprocessor_config.json").write_text(json.dumps(proc, indent=2))


def build_lora_adapter(base_model: Any, folder: Path, *, targets: str | list[str], seed: int = 1,
                       trained: bool = True, base_name: str = "acme/base") -> Path:
    """A LoRA adapter over ``base_model`` (random non-zero B when ``trained``: it changes the outputs)."""
    import_torch().manual_seed(seed)
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=not trained)
    peft_model = get_peft_model(base_model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    peft_model.save_pretrained(folder, save_embedding_layers=False)  # else PEFT asks the Hub about the base
    (folder / "README.md").unlink(missing_ok=True)
    return folder


def build_tiny_bert(folder: Path, *, seed: int = 0, hidden: int = 32) -> Path:
    """A tiny BertModel (2 layers) with a WordPiece tokenizer."""
    torch = import_torch()
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({w.strip("?.").lower() for s in SENTENCES
                                                                      for w in s.split()})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64)
    torch.manual_seed(seed)
    BertModel(cfg).eval().save_pretrained(folder)
    return folder


def build_bge_m3_layout(folder: Path, *, seed: int = 0, hidden: int = 32, heads: tuple[str, ...] = ("colbert", "sparse")) -> Path:
    """Tiny XLM-R encoder + Unigram tokenizer + colbert_linear.pt / sparse_linear.pt, as BGEM3FlagModel reads."""
    torch = import_torch()
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(SENTENCES * 4, trainers.UnigramTrainer(vocab_size=120, special_tokens=specials,
                                                                    unk_token="<unk>", show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                            model_max_length=64).save_pretrained(folder)
    cfg = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=80,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(seed)
    XLMRobertaModel(cfg).eval().save_pretrained(folder)  # with the pooler, as BAAI/bge-m3 ships it
    if "colbert" in heads:
        torch.save(torch.nn.Linear(hidden, hidden).state_dict(), folder / "colbert_linear.pt")
    if "sparse" in heads:
        torch.save(torch.nn.Linear(hidden, 1).state_dict(), folder / "sparse_linear.pt")
    return folder


# ---- manifests and catalog set-up ------------------------------------------------------------------

def write_manifest(path: Path, name: str, family: str, components: list[dict[str, Any]], *,
                   texts: tuple[str, ...] = ("What is the capital of France?", "hello world"),
                   image: tuple[int, int, int] | None = None, expected_missing: tuple[str, ...] = ()) -> Path:
    """A manifest TOML; each component is {role, files|patterns, repo?, revision?, required?}."""
    lines = [f"name = {json.dumps(name)}", f"family = {json.dumps(family)}",
             f"expected_missing_keys = {json.dumps(list(expected_missing))}", ""]
    for comp in components:
        lines.append("[[component]]")
        for key, value in comp.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    lines += ["[smoke]", f"texts = {json.dumps(list(texts))}"]
    if image:
        lines.append(f"image = {{ width = {image[0]}, height = {image[1]}, seed = {image[2]} }}")
    return write_text(path, "\n".join(lines) + "\n")


def adapter_manifest(path: Path, name: str, family: str, base: str, base_commit: str, *,
                     side: dict[str, list[str]], image: tuple[int, int, int] | None = None) -> Path:
    """An adapter over a base pinned by commit; ``side`` maps role -> files of the adapter repo."""
    comps: list[dict[str, Any]] = [{"role": "adapter", "files": ["adapter_config.json", "adapter_model.safetensors"]}]
    comps += [{"role": role, "files": files} for role, files in side.items()]
    comps.append({"role": "base", "repo": base, "revision": base_commit,
                  "patterns": ["config.json", "model*.safetensors*"]})
    return write_manifest(path, name, family, comps, image=image)


def copy_files(src: Path, dst: Path, names: list[str]) -> None:
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copyfile(src / n, dst / n)


def load_base_model(folder: Path, family: str) -> Any:
    """The base as a fresh module (for building adapters over it)."""
    import_torch()
    if family in ("colqwen2", "colpali"):
        from registry.loaders.colpali import colpali_class

        return colpali_class(family).from_pretrained(str(folder), attn_implementation="eager").eval()
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder)).eval()


# ---- remote code ------------------------------------------------------------------------------------

REMOTE_CONFIG = '''from transformers import PretrainedConfig


class TinyConfig(PretrainedConfig):
    model_type = "tiny-remote"

    def __init__(self, vocab_size=64, hidden_size=16, dropout_always=False, stay_in_train=False, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.dropout_always = dropout_always
        self.stay_in_train = stay_in_train
        super().__init__(**kwargs)
'''
REMOTE_MODEL = '''import torch
from transformers import PreTrainedModel

from .configuration_tiny import TinyConfig


class TinyModel(PreTrainedModel):
    config_class = TinyConfig
    base_model_prefix = "tiny"

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.proj = torch.nn.Linear(config.hidden_size, config.hidden_size)
        self.post_init()

    def train(self, mode=True):
        return super().train(True if self.config.stay_in_train else mode)

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.proj(self.embed(input_ids))
        if self.config.dropout_always:  # dropout that ignores eval(), as some remote code does
            hidden = torch.nn.functional.dropout(hidden, p=0.5, training=True)
        return (hidden,)
'''
CODE_FILES = ("configuration_tiny.py", "modeling_tiny.py")


def build_remote_code_model(folder: Path, *, dropout_always: bool = False, stay_in_train: bool = False) -> Path:
    """A tiny custom architecture whose config.json ``auto_map`` points at its own .py files."""
    import_torch()
    from transformers import AutoConfig, AutoModel

    build_tiny_bert(folder / "_tok")
    copy_files(folder / "_tok", folder, ["vocab.txt", "tokenizer.json", "tokenizer_config.json"])
    import shutil

    shutil.rmtree(folder / "_tok")
    write_text(folder / "configuration_tiny.py", REMOTE_CONFIG)
    write_text(folder / "modeling_tiny.py", REMOTE_MODEL)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "tiny-remote", "architectures": ["TinyModel"], "vocab_size": 64, "hidden_size": 16,
        "dropout_always": dropout_always, "stay_in_train": stay_in_train,
        "auto_map": {"AutoConfig": "configuration_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyModel"}}))
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
    import_torch().manual_seed(0)
    AutoModel.from_config(config, trust_remote_code=True).save_pretrained(folder)
    return folder


def remote_code_manifest(path: Path, folder: Path, name: str, *, pin: bool) -> Path:
    """A curated manifest for ``build_remote_code_model``; ``pin`` names each .py with its sha256."""
    import hashlib

    code = [{"path": f, "sha256": hashlib.sha256((folder / f).read_bytes()).hexdigest()} if pin else f
            for f in CODE_FILES]
    lines = [f"name = {json.dumps(name)}", 'family = "remote-code"', "", "[[component]]", 'role = "code"', "files = ["]
    lines += [("  { path = %s, sha256 = %s }," % (json.dumps(c["path"]), json.dumps(c["sha256"])))
              if isinstance(c, dict) else f"  {json.dumps(c)}," for c in code]
    lines += ["]", "", "[[component]]", 'role = "config"', 'files = ["config.json"]', "",
              "[[component]]", 'role = "weights"', 'files = ["model.safetensors"]', "",
              "[[component]]", 'role = "tokenizer"', 'files = ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]',
              "", "[smoke]", 'texts = ["hello world", "the quick brown fox"]']
    return write_text(path, "\n".join(lines) + "\n")


# ---- session fixtures: each tiny model is built once per test session ------------------------------
# (import the ones a module uses: ``from tests.models_helpers import bert_models  # noqa: F401``)

import pytest  # noqa: E402

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # ML cost; the DB is not the subject
BERT_TARGETS = ["query", "value"]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]


@pytest.fixture(scope="session")
def bert_models(tmp_path_factory) -> dict[str, Path]:
    """base, other_base (another size), adapter (trained), untrained adapter, adapter with renamed keys."""
    root = tmp_path_factory.mktemp("bert")
    base = build_tiny_bert(root / "base")
    other = build_tiny_bert(root / "other", hidden=48, seed=3)
    out = {"base": base, "other_base": other}
    for name, kwargs in (("adapter", {}), ("untrained", {"trained": False})):
        folder = build_lora_adapter(load_base_model(base, "transformers"), root / name, targets=BERT_TARGETS,
                                    base_name="somewhere/else", **kwargs)
        copy_files(base, folder, TOKENIZER_FILES + ["vocab.txt"])
        out[name] = folder
    renamed = root / "renamed"
    copy_files(out["adapter"], renamed, ["adapter_config.json", *TOKENIZER_FILES, "vocab.txt"])
    rename_tensors(out["adapter"] / "adapter_model.safetensors", renamed / "adapter_model.safetensors",
                   "encoder.layer.", "encoder.layers.")
    out["renamed"] = renamed
    return out


def rename_tensors(src: Path, dst: Path, old: str, new: str) -> None:
    """Save ``src`` with ``old`` replaced by ``new`` in every tensor name (an adapter saved for other module names)."""
    from safetensors.torch import load_file, save_file

    save_file({k.replace(old, new): v for k, v in load_file(str(src)).items()}, str(dst))


@pytest.fixture(scope="session")
def colqwen2_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny ColQwen2 base and a LoRA adapter over it with colpali's target regex (+ processor files)."""
    root = tmp_path_factory.mktemp("colqwen2")
    base = build_colqwen2_base(root / "base")
    adapter = build_lora_adapter(load_base_model(base, "colqwen2"), root / "adapter", targets=COLPALI_TARGETS,
                                 base_name="./models/colqwen2-base")
    copy_files(base, adapter, TOKENIZER_FILES + ["preprocessor_config.json"])
    renamed = root / "renamed"
    copy_files(adapter, renamed, ["adapter_config.json", *TOKENIZER_FILES, "preprocessor_config.json"])
    rename_tensors(adapter / "adapter_model.safetensors", renamed / "adapter_model.safetensors",
                   "language_model.layers.", "text_model.layers.")
    return {"base": base, "adapter": adapter, "renamed": renamed}


def add_base_and_adapter(reg: Any, tmp: Path, *, base: Path, adapter: Path, family: str, base_family: str,
                         base_name: str = "acme/base", name: str = "acme/adapter",
                         image: tuple[int, int, int] | None = None) -> tuple[Any, Any]:
    """Add the base (its own manifest), then the adapter whose manifest pins that base's commit."""
    from registry.services.add import add_folder

    base_files = sorted(p.name for p in base.iterdir())
    roles = {"config": ["config.json"], "weights": [f for f in base_files if f.endswith(".safetensors")],
             "tokenizer": [f for f in base_files if f.startswith("tokenizer") or f == "vocab.txt"]}
    if "preprocessor_config.json" in base_files:
        roles["processor"] = ["preprocessor_config.json"]
    base_manifest = write_manifest(tmp / f"{base_name.replace('/', '_')}.toml", base_name, base_family,
                                   [{"role": r, "files": f} for r, f in roles.items()], image=image)
    added_base = add_folder(reg, base, base_name, manifest_file=base_manifest)
    side = {"tokenizer": [f for f in TOKENIZER_FILES + ["vocab.txt"] if (adapter / f).exists()]}
    if (adapter / "preprocessor_config.json").exists():
        side["processor"] = ["preprocessor_config.json"]
    manifest = adapter_manifest(tmp / f"{name.replace('/', '_')}.toml", name, family, base_name, added_base.commit,
                                side=side, image=image)
    return added_base, add_folder(reg, adapter, name, manifest_file=manifest)
