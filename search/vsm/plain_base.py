"""Recognising a plain base VLM where a search model was expected, without importing torch.

A base checkpoint (``config.json`` of a family the VSM adapts, no ``vsm_config.json``) is not a
search model; :func:`plain_base_message` says so in one line and names the command that trains one
on it. Used by the config loader (which must not import torch), the localizer loader and
``VSMModel.from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

from seal.models.vlm import VLM_MODEL_TYPES

TRAIN_COMMAND = "seal train vsm --base {path} --data DATA"
"""How a search model is trained on a base VLM (``DATA``: a COCO-format or V*Bench-format folder)."""


def plain_base_message(path: str | Path) -> str | None:
    """The one-line explanation when ``path`` is a plain base VLM checkpoint, with the command that
    trains a search model on it; None otherwise (not a plain base: the caller's own error applies)."""
    p = Path(path)
    if (p / "vsm_config.json").exists():
        return None
    try:
        model_type = json.loads((p / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    if model_type not in VLM_MODEL_TYPES:  # the families the VSM adapts (search.vsm.families.FAMILIES)
        return None
    return (f"this is a plain VLM checkpoint (model_type {model_type!r}), not a search model; train one on it "
            f"with: {TRAIN_COMMAND.format(path=p)}")
