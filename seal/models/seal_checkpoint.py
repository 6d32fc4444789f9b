"""Reader of an original SEAL checkpoint directory (``craigwu/seal_vqa_7b``, ``craigwu/seal_vsm_7b``).

The published checkpoints are what the reference LLaVA code's ``save_pretrained`` wrote with
transformers 4.31: a ``config.json`` (``model_type`` ``llava_search`` for the VQA LLM, ``llava``
for the VSM) and the weights as

- sharded pickles ``pytorch_model-0000K-of-0000N.bin`` + ``pytorch_model.bin.index.json``,
- a single ``pytorch_model.bin``,
- sharded or single safetensors (``model-0000K-of-0000N.safetensors`` + ``model.safetensors.index.json``).

Pickles are read with ``torch.load(weights_only=True, mmap=True)``, one shard at a time, so a 7B
checkpoint is memory-mapped rather than copied. Non-parameter buffers that transformers 4.31 still
persisted (``rotary_emb.inv_freq``, ``position_ids``) are dropped. Every problem a user can fix (a
shard missing or damaged, a tensor missing, a shape that disagrees with ``config.json``) is a one-line
:class:`~seal.core.errors.InputError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from seal.core.errors import InputError

if TYPE_CHECKING:
    import torch

BIN_INDEX = "pytorch_model.bin.index.json"
SAFE_INDEX = "model.safetensors.index.json"
DROPPED_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids")
"""Buffers older transformers saved with the weights; they are recomputed, never loaded."""


@dataclass
class OriginalCheckpoint:
    """All tensors of one original checkpoint, keyed by their original names.

    Attributes:
        path: the checkpoint directory.
        config: its ``config.json`` as a dict.
        tensors: ``{original key: tensor}`` (memory-mapped for pickles), buffers dropped.
        origin: ``{original key: file name}``, the shard each tensor came from (for messages).
    """

    path: Path
    config: dict[str, Any]
    tensors: dict[str, "torch.Tensor"] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    """Keys a converter has taken (:meth:`check_all_used` refuses leftovers)."""

    def take(self, key: str, shape: Iterable[int] | None = None) -> "torch.Tensor":
        """The tensor ``key``, checked against ``shape`` (the shape the config implies).

        Raises:
            InputError: the key is missing, or its shape differs from ``shape``.
        """
        if key not in self.tensors:
            raise InputError(f"missing tensor {key!r} (expected in the original {self.kind()} checkpoint)", self.path)
        t = self.tensors[key]
        self.used.add(key)
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise InputError(f"tensor {key!r} has shape {tuple(t.shape)}, but config.json implies {tuple(shape)}",
                             self.path / self.origin.get(key, ""))
        return t

    def has(self, key: str) -> bool:
        return key in self.tensors

    def with_prefix(self, prefix: str) -> dict[str, "torch.Tensor"]:
        """``{key without prefix: tensor}`` for every key starting with ``prefix`` (all marked used)."""
        out = {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        self.used.update(prefix + k for k in out)
        return out

    def check_all_used(self) -> None:
        """Raise when the checkpoint holds tensors the converter did not map (another layout)."""
        left = sorted(set(self.tensors) - self.used)
        if left:
            raise InputError(f"{len(left)} tensors this converter does not know (e.g. {left[:3]}); "
                             f"is this the checkpoint the command expects?", self.path)

    def count_indexed(self, prefix: str, suffix: str) -> int:
        """How many consecutive ``{prefix}{i}{suffix}`` keys exist from ``i = 0`` (e.g. layers)."""
        n = 0
        while f"{prefix}{n}{suffix}" in self.tensors:
            n += 1
        return n

    def kind(self) -> str:
        return str(self.config.get("model_type", "?"))

    def cfg(self, name: str, expected_type: type | tuple[type, ...] = int) -> Any:
        """A required ``config.json`` field, type-checked."""
        value = self.config.get(name)
        if value is None or not isinstance(value, expected_type) or isinstance(value, bool) and expected_type is int:
            what = getattr(expected_type, "__name__", str(expected_type))
            raise InputError(f"config.json: field {name!r} is missing or not a {what} (found {value!r})",
                             self.path / "config.json")
        return value


def read_original_checkpoint(path: str | Path) -> OriginalCheckpoint:
    """Read ``config.json`` and every weight file of an original SEAL checkpoint directory.

    Raises:
        InputError: no such directory, no / malformed ``config.json``, no weights, an index that
            names a missing shard, a shard that cannot be read, or a tensor the index promises that
            its shard does not hold.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError("expected an original SEAL checkpoint directory, found " +
                         ("a file" if root.exists() else "nothing"), root)
    config = _read_json(root / "config.json", "config.json")
    ckpt = OriginalCheckpoint(root, config)
    for name, expected in _weight_files(root):
        loaded = _load_file(root / name)
        for key in expected:
            if key not in loaded:
                raise InputError(f"the index lists tensor {key!r} in this shard, but the shard does not hold it",
                                 root / name)
        for key, tensor in loaded.items():
            if key.endswith(DROPPED_SUFFIXES):
                continue
            ckpt.tensors[key] = tensor
            ckpt.origin[key] = name
    return ckpt


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"not an original checkpoint: {what} is missing", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read {what} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                         path) from None
    if not isinstance(data, dict):
        raise InputError(f"{what}: expected a JSON object, found {type(data).__name__}", path)
    return data


def _weight_files(root: Path) -> list[tuple[str, list[str]]]:
    """``[(file name, keys its index promises)]`` in shard order."""
    for index_name in (SAFE_INDEX, BIN_INDEX):
        if (root / index_name).is_file():
            index = _read_json(root / index_name, index_name)
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise InputError("expected a non-empty 'weight_map' object", root / index_name)
            shards: dict[str, list[str]] = {}
            for key, name in weight_map.items():
                shards.setdefault(str(name), []).append(key)
            for name in shards:
                if not (root / name).is_file():
                    raise InputError(f"shard {name} listed in {index_name} is missing", root / name)
            return sorted(shards.items())
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (root / single).is_file():
            return [(single, [])]
    raise InputError("no weights: expected pytorch_model*.bin or model*.safetensors (with its index)", root)


def _load_file(path: Path) -> dict[str, "torch.Tensor"]:
    """One weight file; a damaged or refused file is an InputError naming it."""
    import pickle
    import zipfile

    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            try:
                data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # mmap needs the zip format; old-format pickles load plainly
                if "mmap" not in str(exc):
                    raise
                data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"cannot read the weight file ({type(exc).__name__}: {first[:160]})", path) from None
    except Exception as exc:  # safetensors raises its own error type on a damaged header
        if type(exc).__name__ != "SafetensorError":
            raise
        raise InputError(f"cannot read the weight file (SafetensorError: {str(exc)[:160]})", path) from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError("expected a state dict of tensors in the weight file", path)
    return data
