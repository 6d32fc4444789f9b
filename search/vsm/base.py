"""The search model's base VLM on disk: load one strictly, save one, and recognise a plain base.

A VSM checkpoint keeps its base VLM (model + processor, ``save_pretrained`` of both) in
``backbone/`` (or at its top level when merged). Any family of :mod:`search.vsm.families` loads
through transformers' own classes (``AutoModelForImageTextToText`` / ``AutoProcessor``, local
files only). A directory holding only such a base (``config.json`` of a known family, no
``vsm_config.json``) is not a search model: :func:`plain_base_message` says so and names the
command that trains one on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.vsm.families import FAMILIES

if TYPE_CHECKING:
    import torch

TRAIN_COMMAND = "seal train vsm --base {path} --data DATA"
"""How a search model is trained on a base VLM (``DATA``: a COCO-format or V*Bench-format folder)."""


def load_base(path: str | Path, device: str = "cpu", dtype: "torch.dtype | None" = None) -> tuple[Any, Any]:
    """``(model, processor)`` of a base VLM directory of a family the VSM adapts, strictly, in eval mode
    (:func:`seal.models.vlm.load_vlm` restricted to :data:`search.vsm.families.FAMILIES`).

    Raises:
        InputError: not a model directory, another family, no processor, damaged weights or weights
            that do not match the config.
    """
    from seal.models.vlm import load_vlm

    return load_vlm(path, device=device, dtype=dtype, accepted=tuple(FAMILIES))


def save_base(model: Any, processor: Any, out_dir: str | Path) -> Path:
    """``save_pretrained`` the base VLM and its processor into one directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


def plain_base_message(path: str | Path) -> str | None:
    """The one-line explanation when ``path`` is a plain base VLM checkpoint (a ``config.json`` of a
    family the VSM adapts, no ``vsm_config.json``), with the command that trains a search model on it;
    None otherwise (not a plain base: the caller's own error applies)."""
    p = Path(path)
    if (p / "vsm_config.json").exists():
        return None
    try:
        model_type = json.loads((p / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    if model_type not in FAMILIES:
        return None
    return (f"this is a plain VLM checkpoint (model_type {model_type!r}), not a search model; train one on it "
            f"with: {TRAIN_COMMAND.format(path=p)}")
