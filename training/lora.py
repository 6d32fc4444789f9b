"""Fine-tuning a real base: the ``lora`` section, attaching a peft LoRA adapter, saving it, merging it.

A VQA fine-tune from ``--base DIR`` trains either a LoRA adapter (``lora.enabled``; the base's
weights stay frozen except ``lora.modules_to_save``, trained in full and saved in the adapter) or
every weight (``lora.full_finetune``). Its export is the adapter alone (peft ``save_pretrained``:
``adapter_config.json`` + ``adapter_model.safetensors``) with the base's processor and a manifest
naming the base (path and fingerprint, ``trained_against.base``); ``seal merge-lora --vqa`` folds it
into a plain checkpoint (:func:`merge_vqa_adapter`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seal.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
LANGUAGE_MODEL = r".*language_model\..*\.({names})"
PROJECTOR = "projector"
"""In ``modules_to_save``, the family's vision-to-text projector (:data:`PROJECTORS`)."""
PROJECTORS: dict[str, str] = {"llava": "multi_modal_projector", "llava_onevision": "multi_modal_projector",
                              "qwen2_5_vl": "visual.merger"}
"""``model_type`` -> the module name of its projector."""
"""A list of ``target_modules`` names becomes this regex: the decoder's layers only (the vision
tower of a LLaVA-like model is named ``vision_tower`` / ``visual``, never ``language_model``)."""


@dataclass
class LoRAConfig:
    """The ``lora`` section: how a real base (``--base``) is fine-tuned."""

    enabled: bool = True
    """Train a peft LoRA adapter on the frozen base (False needs ``full_finetune``)."""
    rank: int = 8
    """LoRA rank r."""
    alpha: int = 16
    """LoRA alpha (the update is scaled by alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA branch's input."""
    target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Linear layers that get LoRA: a list of layer names (applied to the language model's layers
    only) or one regex matched against full module names (anything, the vision tower included)."""
    modules_to_save: list[str] = field(default_factory=lambda: [PROJECTOR])
    """Modules trained in full and saved with the adapter, by name (``projector``: the family's
    projector, e.g. LLaVA's ``multi_modal_projector``, Qwen2.5-VL's ``visual.merger``); [] = none."""
    full_finetune: bool = False
    """Train every weight of the base instead of an adapter (``enabled`` must then be false); the
    export is then a whole checkpoint."""

    def __post_init__(self) -> None:
        if self.enabled == self.full_finetune:
            raise ConfigError("lora.enabled / lora.full_finetune: set exactly one (an adapter or every weight), "
                              f"found {self.enabled} / {self.full_finetune}")
        if self.rank < 1 or self.alpha < 1:
            raise ConfigError(f"lora.rank / lora.alpha: expected >= 1, found {self.rank} / {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout: expected 0 <= p < 1, found {self.dropout}")
        if isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as exc:
                raise ConfigError(f"lora.target_modules: not a valid regex ({exc})") from None
        elif not self.target_modules:
            raise ConfigError("lora.target_modules: expected a regex or at least one layer name")
        self.modules_to_save = [str(m) for m in self.modules_to_save]

    def target_regex(self) -> str:
        """``target_modules`` as the regex peft matches against full module names."""
        if isinstance(self.target_modules, str):
            return self.target_modules
        return LANGUAGE_MODEL.format(names="|".join(re.escape(t) for t in self.target_modules))

    def save_names(self, model_type: str) -> list[str]:
        """``modules_to_save`` with ``projector`` replaced by the ``model_type`` family's projector.

        Raises:
            ConfigError: ``projector`` for a family whose projector is not known.
        """
        if PROJECTOR in self.modules_to_save and model_type not in PROJECTORS:
            raise ConfigError(f"lora.modules_to_save: no known projector for model_type {model_type!r}; name the "
                              f"module instead of {PROJECTOR!r}")
        return [PROJECTORS[model_type] if m == PROJECTOR else m for m in self.modules_to_save]

    def peft_config(self, model_type: str):
        """The peft ``LoraConfig`` for a base of ``model_type``."""
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_regex(), modules_to_save=self.save_names(model_type) or None)


def attach(model, cfg: LoRAConfig):
    """``model`` ready to train: wrapped by a fresh LoRA adapter (base frozen), or with every weight
    trainable (``full_finetune``).

    Raises:
        ConfigError: ``target_modules`` matches no linear layer, or a ``modules_to_save`` name no module.
    """
    if cfg.full_finetune:
        model.requires_grad_(True)
        return model
    from peft import get_peft_model

    names = [n for n, _ in model.named_modules()]
    pattern = re.compile(cfg.target_regex())
    if not any(pattern.fullmatch(n) for n in names):
        raise ConfigError(f"lora.target_modules: {cfg.target_regex()!r} matches no module of the base "
                          f"(e.g. {[n for n in names if n.endswith('proj')][:4]})")
    model_type = str(model.config.model_type)
    for m in cfg.save_names(model_type):
        if not any(n == m or n.endswith("." + m) for n in names):
            raise ConfigError(f"lora.modules_to_save: the {model_type} base has no module {m!r}")
    return get_peft_model(model, cfg.peft_config(model_type))


def save_adapter(model, out_dir: Path) -> list[str]:
    """Write the adapter (LoRA + ``modules_to_save``) with peft ``save_pretrained``; returns its files."""
    model.save_pretrained(str(out_dir), save_embedding_layers=False)
    return list(ADAPTER_FILES)


def base_record(base: str | Path) -> dict[str, Any]:
    """What the manifest records about the base: its path, ``model_type`` and fingerprint."""
    import json

    from seal.core.manifest import fingerprint

    config = json.loads((Path(base) / "config.json").read_text())
    return {"path": str(base), "model_type": config.get("model_type"), "fingerprint": fingerprint(base)}


def load_adapter_model(adapter_dir: Path, base: str | Path, dtype: "torch.dtype | None" = None):
    """``(peft model, processor)``: the base at ``base`` (any family :func:`seal.models.vlm.load_vlm`
    loads) with the adapter of ``adapter_dir``.

    Raises:
        InputError: the base's fingerprint differs from the one the adapter was trained on, or the
            adapter's weights do not fit its config.
    """
    from peft import PeftModel

    from seal.core.manifest import fingerprint, read_manifest
    from seal.core.weights import load_errors
    from seal.models.vlm import load_vlm

    manifest = read_manifest(adapter_dir, "vqa")
    trained = manifest.trained_against.get("base", {}).get("fingerprint")
    if trained is not None and fingerprint(base) != trained:
        raise InputError(f"the base {base} is not the model this adapter was trained on (fingerprint "
                         f"{fingerprint(base)[:19]}, expected {trained[:19]})", adapter_dir)
    model, processor = load_vlm(base, dtype=dtype)
    with load_errors(adapter_dir, "adapter"):
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    return peft_model.eval(), processor


def adapter_base(adapter_dir: Path) -> str:
    """The base path recorded in a VQA adapter's manifest."""
    from seal.core.manifest import read_manifest

    manifest = read_manifest(adapter_dir, "vqa")
    base = manifest.trained_against.get("base", {}).get("path")
    if manifest.config.get("adapter") is None or not base:
        raise InputError("not a VQA adapter checkpoint (its manifest has no adapter config or base)", adapter_dir)
    return base


def lora_record(cfg: LoRAConfig) -> dict[str, Any]:
    """The ``lora`` section as the manifest records it (with the regex peft matched)."""
    return {**asdict(cfg), "target_regex": cfg.target_regex()}


PARITY_QUESTION = "What is the colour of the object?"
"""The fixed prompt of the merge's parity check (with a seeded random image)."""


def _parity_logits(model, processor, vwm_config: dict) -> "torch.Tensor":
    """(1, T, V) float32 logits of the parity prompt (the global view of a seeded random image)."""
    import numpy as np
    import torch
    from PIL import Image

    from seal.core.config import from_dict
    from seal.vqa.prompts import encode_prompt
    from vwm.layout import VisualWorkingMemory, VWMConfig

    pixels = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    vwm = VisualWorkingMemory(global_image=Image.fromarray(pixels), config=from_dict(VWMConfig, vwm_config))
    enc = encode_prompt(processor, PARITY_QUESTION, vwm)
    with torch.no_grad():
        return model(**{k: v.to(model.device) for k, v in enc.items()}).logits.float().cpu()


def merge_vqa_adapter(adapter_dir: str | Path, out_dir: str | Path, base: str | Path | None = None,
                      tolerance: float = 1e-3, dtype: "torch.dtype | None" = None,
                      overwrite: bool = False) -> dict[str, Any]:
    """Fold the VQA adapter ``adapter_dir`` into its base and write a plain checkpoint to ``out_dir``.

    ``out_dir`` loads with the family's class (``AutoModelForImageTextToText.from_pretrained``) and
    ``AutoProcessor`` and
    holds a manifest (kind ``vqa``, the adapter's ``vwm`` config, ``recipe.merged_from``). The merged
    model is reloaded from disk and its logits on a fixed prompt compared with the adapter model's.

    Args:
        base: the base checkpoint (default: the path the adapter's manifest records).

    Returns: ``{"out", "source", "base", "parameters", "max_abs_logit_diff", "tolerance", "parity_ok"}``.
    """
    import gc
    import shutil

    from search.vsm.merge import check_out_dir
    from seal.core.manifest import model_files, read_manifest, write_manifest
    from seal.models.backbone import save_llava
    from seal.models.vlm import load_vlm

    src, out = Path(adapter_dir), Path(out_dir)
    base = str(base or adapter_base(src))
    manifest = read_manifest(src, "vqa")
    clear = check_out_dir(src, out, overwrite)
    model, processor = load_adapter_model(src, base, dtype)
    vwm_config = manifest.config.get("vwm", {})
    reference = _parity_logits(model, processor, vwm_config)
    merged = model.merge_and_unload()
    if clear:
        shutil.rmtree(out)
    save_llava(merged, processor, out)
    del model, merged
    gc.collect()
    reloaded, processor = load_vlm(out, dtype=dtype)
    diff = float((reference - _parity_logits(reloaded, processor, vwm_config)).abs().max())
    config = {k: v for k, v in manifest.config.items() if k not in ("adapter", "base")}
    write_manifest(out, "vqa", config, model_files(out), trained_against={"base": base},
                   recipe={**manifest.recipe, "merged_from": {"path": str(src), "fingerprint": manifest.fingerprint}})
    return {"out": str(out), "source": str(src), "base": base,
            "parameters": sum(p.numel() for p in reloaded.parameters()), "max_abs_logit_diff": diff,
            "tolerance": tolerance, "parity_ok": diff <= tolerance}
