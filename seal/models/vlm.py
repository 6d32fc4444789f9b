"""Load any supported vision-language checkpoint (model + processor) from a local directory, strictly.

One loader for every family the VQA LLM may be (the ``model_type`` in ``config.json``):

- ``llava``: ``LlavaForConditionalGeneration`` (our tiny models, ``llava-hf/llava-1.5-*-hf``);
- ``llava_onevision``: ``LlavaOnevisionForConditionalGeneration`` (``llava-hf/llava-onevision-qwen2-*-ov-hf``,
  any-resolution tiles);
- ``qwen2_5_vl``: ``Qwen2_5_VLForConditionalGeneration`` (``Qwen/Qwen2.5-VL-*-Instruct``, dynamic
  resolution, M-RoPE).

Each loads with ``AutoModelForImageTextToText`` / ``AutoProcessor`` from local files only, and is
refused (one :class:`~seal.core.errors.InputError` naming the directory or file) when the directory
is not a checkpoint, is of another family, lacks its processor, or its weights do not match its
config (missing / unexpected / mis-shaped tensors) or hold NaN / inf.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from seal.core.errors import InputError

if TYPE_CHECKING:
    import torch

VLM_MODEL_TYPES: tuple[str, ...] = ("llava", "llava_onevision", "qwen2_5_vl")
"""The ``model_type`` values :func:`load_vlm` accepts."""

DTYPES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""Config names of the parameter dtypes -> ``torch`` attribute names."""


def torch_dtype(name: "str | torch.dtype | None") -> "torch.dtype":
    """``torch`` dtype of a config name (``fp32`` | ``bf16`` | ``fp16``); a ``torch.dtype`` passes
    through, None is float32."""
    import torch

    if name is None:
        return torch.float32
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, found {name!r}")
    return getattr(torch, DTYPES[name])


def read_model_type(path: str | Path, accepted: Sequence[str] = VLM_MODEL_TYPES) -> str:
    """The ``model_type`` of the checkpoint directory ``path``, checked to be one of ``accepted``.

    Raises:
        InputError: missing path, a file, no or unreadable ``config.json``, another model type, no
            weights file, or no processor saved beside the model.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such model directory", p)
    if not p.is_dir():
        raise InputError("expected a model directory (from save_pretrained), found a file", p)
    config_file = p / "config.json"
    if not config_file.is_file():
        raise InputError("not a model directory: config.json is missing", p)
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config.json ({exc})", p) from None
    if not isinstance(config, dict):
        raise InputError(f"config.json: expected a JSON object, found {type(config).__name__}", p)
    model_type = config.get("model_type")
    if model_type not in accepted:
        expected = f"a {accepted[0]!r} checkpoint" if len(accepted) == 1 else \
            "a checkpoint of model type " + ", ".join(map(repr, accepted[:-1])) + f" or {accepted[-1]!r}"
        raise InputError(f"expected {expected}, config.json has model_type {model_type!r}", p)
    if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
        raise InputError("no weights (*.safetensors) in the model directory", p)
    if not (p / "processor_config.json").is_file() and not (p / "preprocessor_config.json").is_file():
        raise InputError("no processor saved beside the model (processor_config.json missing)", p)
    return str(model_type)


def load_vlm(path: str | Path, device: str = "cpu", dtype: "str | torch.dtype | None" = None,
             device_map: str | None = None, accepted: Sequence[str] = VLM_MODEL_TYPES) -> tuple[Any, Any]:
    """Load a vision-language checkpoint directory (model + processor) from local files, strictly.

    Args:
        path: a ``save_pretrained`` directory of one of the ``accepted`` model types.
        device: torch device to move the model to (ignored when ``device_map`` places it).
        dtype: parameter dtype (``fp32`` | ``bf16`` | ``fp16`` or a ``torch.dtype``; default float32).
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"``); empty / None = load, then ``.to(device)``.
        accepted: the model types to accept.

    Returns:
        ``(model, processor)``: the family's ``*ForConditionalGeneration`` in eval mode and its processor.

    Raises:
        InputError: see :func:`read_model_type`; a damaged weights file; weights that do not match
            the config (missing / unexpected / mis-shaped) or are not finite.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    from seal.core.weights import check_loaded_finite, load_errors, mismatch_message

    hf_logging.disable_progress_bar()  # a local checkpoint needs no "Loading weights" bar
    p = Path(path)
    read_model_type(p, accepted)
    extra = {"device_map": device_map} if device_map else {}
    # a damaged weights file, a refused pickle or a config.json of other sizes: one line naming the file
    with load_errors(p):
        model, info = AutoModelForImageTextToText.from_pretrained(
            str(p), local_files_only=True, dtype=torch_dtype(dtype), output_loading_info=True,
            ignore_mismatched_sizes=True, **extra)  # mis-sized tensors are listed in info (refused below)
        processor = AutoProcessor.from_pretrained(str(p), local_files_only=True)
    if info.get("mismatched_keys"):
        raise InputError(mismatch_message(info["mismatched_keys"]), p)
    check_loaded_finite(model.state_dict().items(), p)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        listing = "; ".join(f"{k}: {sorted(map(str, v))[:5]}" for k, v in bad.items())
        raise InputError(f"weights do not match the config ({listing})", p)
    if not device_map:
        model = model.to(device)
    return model.eval(), processor


def image_token_id(processor: Any) -> int:
    """Id of the token each image's placeholder expands to (``<image>``, ``<|image_pad|>``, ...)."""
    token_id = getattr(processor, "image_token_id", None)
    if isinstance(token_id, int):
        return token_id
    token = getattr(processor, "image_token", "<image>")
    return int(processor.tokenizer.convert_tokens_to_ids(token))


def uses_mrope(model: Any) -> bool:
    """Whether ``model`` places tokens with multimodal rotary positions (Qwen2.5-VL's M-RoPE: three
    position rows, image tokens on a 2-D grid), so that a continuation after a cached prompt needs
    its positions given explicitly."""
    return callable(getattr(getattr(model, "model", None), "get_rope_index", None))


def rope_delta(model: Any, prompt: Any) -> int:
    """How far the next position after ``prompt`` (batch of one) lies from its length: 0 for 1-D
    positions and text-only prompts; under M-RoPE an image's tokens share positions, so the text
    after it continues from ``max position + 1`` (``delta = max + 1 - length``). A prompt with explicit
    ``position_ids`` (3, 1, P) (a token cut that keeps some image tokens at their own grid positions,
    :func:`seal.vqa.token_keep.keep_mrope_vision_tokens`) takes its delta from them."""
    if not uses_mrope(model):
        return 0
    positions = prompt.get("position_ids")
    if positions is not None:
        return int(positions.max()) + 1 - int(prompt["input_ids"].shape[1])
    if prompt.get("image_grid_thw") is None:
        return 0
    import torch

    keys = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts", "attention_mask", "mm_token_type_ids")
    kwargs = {k: prompt[k].to(model.device) for k in keys if prompt.get(k) is not None}
    with torch.no_grad():
        _, delta = model.model.get_rope_index(prompt["input_ids"].to(model.device), **kwargs)
    return int(delta.reshape(-1)[0])


def continuation_position_ids(model: Any, prompt_length: int, delta: int, batch: int,
                              steps: int) -> "torch.Tensor | None":
    """Position ids of ``steps`` tokens following a cached prompt of ``prompt_length`` tokens, for
    ``batch`` rows: None (the model counts on from its cache) unless it uses M-RoPE; then
    ``(3, batch, steps)`` int64 ``prompt_length + delta + j`` (text positions are equal in all rows)."""
    if not uses_mrope(model):
        return None
    import torch

    pos = torch.arange(steps, device=model.device) + prompt_length + delta  # (steps,)
    return pos.view(1, 1, -1).expand(3, batch, -1)
