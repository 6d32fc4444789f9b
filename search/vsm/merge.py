"""Fold a VSM checkpoint's peft adapter into its base VLM: one plain model, no peft needed at load time.

``seal merge-lora --vsm DIR --out OUT`` runs :func:`merge_checkpoint`:

1. load ``DIR`` with :meth:`VSMModel.from_pretrained` (backbone + adapter + decoders, strict);
2. record the reference outputs of a fixed prompt (:func:`parity_inputs`) with the adapter active;
3. ``merge_and_unload()`` the peft model in place: every LoRA delta ``B @ A * alpha / r`` is added
   to its base ``Linear``, the trained ``<LOC>`` rows (peft trainable tokens) are written into
   the input embedding and the LM head, and each ``modules_to_save`` copy replaces its original;
4. save ``OUT`` in the merged layout (:meth:`VSMModel.save_pretrained` of a merged model)::

       OUT/config.json, model.safetensors, processor + tokenizer files   plain VLM of the base's family
       OUT/decoders.safetensors                                          the two decoders, unchanged
       OUT/vsm_config.json                                               + "merged": true, "merge": {...}

   so ``AutoModelForImageTextToText.from_pretrained(OUT, local_files_only=True)`` and
   ``AutoProcessor.from_pretrained(OUT)`` load it like any checkpoint of its family (llava-hf,
   LLaVA-OneVision, Qwen2.5-VL), and
   ``VSMModel.from_pretrained(OUT)`` (hence ``load_vsm_localizer``) still gives the localizer;
5. reload ``OUT`` strictly and compare its outputs with the reference (the parity check);
6. carry every companion across: the second stage (the crop matcher folder) is copied, and
   ``OUT/manifest.json`` keeps the source's search defaults and second stage and records the source
   it was merged from, so the merged model searches exactly as the adapter checkpoint did.

Memory: one copy of the model while merging (the merge is in place), then the reloaded copy after
the first one is freed.
"""

from __future__ import annotations

import gc
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
import numpy as np
import torch

from search.vsm.model import CONFIG_FILE, MERGED_KEY, VSMModel
from seal.core.errors import InputError

PARITY_TARGET = "red star"
"""Target name of the fixed parity prompt (a ``detect`` training row: question + reply + ``</s>``)."""
PARITY_SEED = 0
"""Seed of the fixed random parity patch."""

_PEFT_MARKERS = ("lora_", "trainable_tokens", "modules_to_save", "base_layer", "original_module")
"""Substrings of parameter names that only exist while a peft adapter is attached."""


@dataclass
class MergeReport:
    """Result of :func:`merge_checkpoint` (the JSON line of ``seal merge-lora``).

    Attributes:
        out: the merged checkpoint directory.
        source: the adapter checkpoint it was made from.
        parameters: parameters of the merged VLM.
        decoder_parameters: parameters of the two decoders (copied unchanged).
        max_abs_logit_diff: max |adapter - merged| over the (1, T, V) LM logits of the parity prompt.
        max_abs_loc_state_diff: max |adapter - merged| over the (1, D_text) ``<LOC>`` state.
        max_abs_heatmap_diff: max |adapter - merged| over the (1, H', W') heatmap logits.
        tolerance: the largest difference accepted.
        parity_ok: all three differences <= ``tolerance``.
    """

    out: str
    source: str
    parameters: int
    decoder_parameters: int
    max_abs_logit_diff: float
    max_abs_loc_state_diff: float
    max_abs_heatmap_diff: float
    tolerance: float
    parity_ok: bool


@dataclass
class ParityOutputs:
    """Outputs of the parity prompt.

    Attributes:
        logits: (1, T, V) float32 LM logits at every position of the prompt.
        loc_state: (1, D_text) float32 the ``<LOC>`` hidden state.
        heatmap: (1, H', W') float32 heatmap logits.
    """

    logits: torch.Tensor
    loc_state: torch.Tensor
    heatmap: torch.Tensor

    def max_abs_diff(self, other: "ParityOutputs") -> dict[str, float]:
        return {name: float((getattr(self, name) - getattr(other, name)).abs().max())
                for name in ("logits", "loc_state", "heatmap")}


def parity_inputs(model: VSMModel) -> dict[str, torch.Tensor]:
    """The fixed parity batch: ``input_ids`` / ``attention_mask`` (1, T) int64 of a ``detect`` training
    row about :data:`PARITY_TARGET` and ``pixel_values`` (1, 3, S, S) of a seeded random patch."""
    rng = np.random.default_rng(PARITY_SEED)
    patch = rng.integers(0, 256, (model.input_size, model.input_size, 3), dtype=np.uint8)
    enc = model.prompts(["detect"], [PARITY_TARGET], with_reply=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "pixel_values": model.preprocess([patch])}


@torch.no_grad()
def parity_outputs(model: VSMModel, inputs: dict[str, torch.Tensor]) -> ParityOutputs:
    """LM logits, ``<LOC>`` state and heatmap of ``inputs`` (from :func:`parity_inputs`), in float32."""
    features = model.encode_images(inputs["pixel_values"])
    hidden = model.hidden_states(inputs["input_ids"], inputs["attention_mask"], features)  # (1, T, D_text)
    out = model(inputs["input_ids"], inputs["attention_mask"], features=features)
    logits = model.backbone.lm_head(hidden)  # (1, T, V)
    return ParityOutputs(logits.float().cpu(), out.loc_state.float().cpu(), out.heatmap.float().cpu())


def merge_adapter(model: VSMModel) -> VSMModel:
    """Merge ``model``'s adapter into its base VLM in place (peft ``merge_and_unload``); returns ``model``.

    Raises:
        ValueError: ``model`` is already merged, or a peft module survived the merge.
    """
    if model.is_merged:
        raise ValueError("the model is already merged")
    merged = model.llava.merge_and_unload()
    leftover = [n for n, _ in merged.named_parameters() if any(m in n for m in _PEFT_MARKERS)]
    if leftover:
        raise ValueError(f"peft modules left after merge_and_unload: {leftover[:5]}")
    model.llava = merged  # nn.Module attribute: replaces the registered submodule
    for param in merged.parameters():
        param.requires_grad_(False)
    return model.eval()


def check_out_dir(vsm_dir: Path, out_dir: Path, overwrite: bool) -> bool:
    """Whether ``out_dir`` must be cleared first; refuses the source checkpoint (or a directory holding
    it), a file, and a non-empty directory without ``overwrite``."""
    src, out = vsm_dir.resolve(), out_dir.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise InputError("the output directory must not be the source checkpoint, inside it or hold it", out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("the output path exists and is not a directory", out_dir)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError("the output directory is not empty (pass --overwrite to replace it)", out_dir)
        return True
    return False


def _already_merged(vsm_dir: Path) -> bool:
    """``vsm_config.json`` says merged (unreadable files are left to ``VSMModel.from_pretrained``)."""
    try:
        meta = json.loads((vsm_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get(MERGED_KEY) is True


def merge_checkpoint(vsm_dir: str | Path, out_dir: str | Path, tolerance: float = 1e-3,
                     dtype: torch.dtype | None = None, overwrite: bool = False) -> MergeReport:
    """Merge the VSM checkpoint ``vsm_dir`` into ``out_dir`` and check parity (see the module docstring).

    Args:
        vsm_dir: an adapter checkpoint (:meth:`VSMModel.save_pretrained`).
        out_dir: where the merged checkpoint goes (created; must be empty unless ``overwrite``).
        tolerance: largest accepted max-abs difference of the parity outputs.
        dtype: dtype the model is loaded, merged and saved in (default float32).
        overwrite: replace a non-empty ``out_dir``.

    Raises:
        InputError: ``vsm_dir`` is not a loadable adapter checkpoint, or ``out_dir`` is unusable.
    """
    from seal.core.manifest import model_files, read_manifest, write_manifest

    src, out = Path(vsm_dir), Path(out_dir)
    source = read_manifest(src, "vsm")  # every listed file and the second stage present, before any work
    if _already_merged(src):
        raise InputError("the checkpoint is already merged", src)
    clear = check_out_dir(src, out, overwrite)
    model = VSMModel.from_pretrained(src, dtype=dtype)
    inputs = parity_inputs(model)
    reference = parity_outputs(model, inputs)
    merge_adapter(model)
    if clear:
        shutil.rmtree(out)
    model.save_pretrained(out)
    decoder_parameters = sum(p.numel() for m in (model.heatmap_decoder, model.box_decoder) for p in m.parameters())
    del model
    gc.collect()

    merged = VSMModel.from_pretrained(out, dtype=dtype)  # strict reload of what was written
    diffs = reference.max_abs_diff(parity_outputs(merged, inputs))
    report = MergeReport(
        out=str(out), source=str(src), parameters=sum(p.numel() for p in merged.backbone.parameters()),
        decoder_parameters=decoder_parameters, max_abs_logit_diff=diffs["logits"],
        max_abs_loc_state_diff=diffs["loc_state"], max_abs_heatmap_diff=diffs["heatmap"], tolerance=tolerance,
        parity_ok=all(d <= tolerance for d in diffs.values()))
    meta = json.loads((out / CONFIG_FILE).read_text())
    meta["merge"] = {k: v for k, v in asdict(report).items() if k not in ("out", "parameters", "decoder_parameters")}
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    stage = source.second_stage
    if stage is not None:
        shutil.copytree(src / stage["path"], out / stage["path"])
    write_manifest(out, "vsm", meta, model_files(out), search_defaults=source.search_defaults,
                   second_stage=None if stage is None else stage["path"],
                   recipe={**source.recipe, "merged_from": {"path": str(src), "fingerprint": source.fingerprint}})
    return report
