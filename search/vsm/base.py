"""The search model's base VLM on disk: load one strictly, save one.

A VSM checkpoint keeps its base VLM (model + processor, ``save_pretrained`` of both) in
``backbone/`` (or at its top level when merged). Any family of :mod:`search.vsm.families` loads
through transformers' own classes (``AutoModelForImageTextToText`` / ``AutoProcessor``, local
files only). A directory holding only such a base is not a search model:
:func:`search.vsm.plain_base.plain_base_message` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.vsm.families import FAMILIES

if TYPE_CHECKING:
    import torch


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


