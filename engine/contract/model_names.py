"""Encoder names: bundled models, hub names and local paths, checked without torch.

Stdlib only, so the UI can check an encoder field as the user types and the headless CLI
can refuse a missing model path before any process starts.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

from engine.contract.errors import ModelError

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = ("multilingual-e5-small",)
BUNDLED_CHOICES = tuple(BUNDLED_PREFIX + name for name in BUNDLED_MODELS)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
HUB_SUGGESTIONS = ("xlm-roberta-base", "xlm-roberta-large", "sentence-transformers/LaBSE",
                   "intfloat/multilingual-e5-small", "intfloat/multilingual-e5-base")


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(name))


def check_model_folder(name: str) -> Path:
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(f"encoder path {name!r} does not exist or is not a folder")
    if not (path / "config.json").is_file():
        raise ModelError(f"encoder path {name!r} has no config.json (not a Hugging Face model folder)")
    if not any((path / weights).is_file() for weights in WEIGHT_FILES):
        raise ModelError(f"encoder path {name!r} has no weights ({', '.join(WEIGHT_FILES[:2])}, …): a tokenizer and a "
                         "config alone are not a model")
    return path


def check_encoder_name(name: str) -> None:
    """Cheap checks before a run starts (no download, no conversion)."""
    if not name.strip():
        raise ModelError("encoder name is empty")
    if name.startswith(BUNDLED_PREFIX):
        if name[len(BUNDLED_PREFIX):] not in BUNDLED_MODELS:
            raise ModelError(f"unknown bundled encoder {name!r} (known: {', '.join(BUNDLED_CHOICES)})")
    elif looks_like_path(name):
        check_model_folder(name)


def hub_unreachable(endpoint: str, timeout: float = 5.0) -> str | None:
    """Why a TCP connection to the hub fails, or None when it succeeds."""
    parsed = urllib.parse.urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
    except OSError as error:
        return getattr(error, "strerror", None) or str(error) or type(error).__name__
    return None
