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
    """``(model, processor)`` of a base VLM directory of a supported family, strictly, in eval mode
    (``llava``: :func:`seal.models.backbone.load_llava`; the others: ``AutoModelForImageTextToText`` /
    ``AutoProcessor`` with the same checks; to be replaced by the one family-generic loader of
    ``seal.models`` when it lands).

    Raises:
        InputError: not a model directory, another family, no processor, damaged weights or weights
            that do not match the config.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    from seal.core.errors import InputError
    from seal.core.weights import check_loaded_finite, load_errors, mismatch_message
    from seal.models.backbone import load_llava

    p = Path(path)
    model_type = _model_type(p)
    if model_type == "llava":
        return load_llava(p, device=device, dtype=dtype)
    if model_type not in FAMILIES:
        raise InputError(f"expected a base VLM of type {' / '.join(FAMILIES)}, config.json has model_type "
                         f"{model_type!r}", p)
    if not (p / "processor_config.json").is_file() and not (p / "preprocessor_config.json").is_file():
        raise InputError("no processor saved beside the model (processor_config.json missing)", p)
    hf_logging.disable_progress_bar()
    with load_errors(p):
        model, info = AutoModelForImageTextToText.from_pretrained(
            str(p), local_files_only=True, dtype=dtype or torch.float32, output_loading_info=True,
            ignore_mismatched_sizes=True)  # mis-sized tensors are listed in info (refused below)
        processor = AutoProcessor.from_pretrained(str(p), local_files_only=True)
    if info.get("mismatched_keys"):
        raise InputError(mismatch_message(info["mismatched_keys"]), p)
    check_loaded_finite(model.state_dict().items(), p)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys") and v}
    if bad:
        listing = "; ".join(f"{k}: {sorted(map(str, v))[:5]}" for k, v in bad.items())
        raise InputError(f"weights do not match the config ({listing})", p)
    return model.to(device).eval(), processor


def _model_type(p: Path) -> object:
    """``model_type`` of ``p/config.json`` (InputError when the directory or the file is unusable)."""
    from seal.core.errors import InputError

    if not p.is_dir():
        raise InputError("expected a model directory (from save_pretrained), found " +
                         ("a file" if p.exists() else "nothing"), p)
    try:
        config = json.loads((p / "config.json").read_text())
    except FileNotFoundError:
        raise InputError("not a model directory: config.json is missing", p) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config.json ({exc})", p) from None
    return config.get("model_type") if isinstance(config, dict) else None


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
