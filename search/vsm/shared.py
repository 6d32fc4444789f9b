"""One LLaVA backbone, several named LoRA adapters: the VQA LLM and the search model share one base.

SEAL runs two models on the same image: the VQA LLM (answers, lists missing targets) and the
V* search model (locates them). When both are LoRA adapters on the same base LLaVA, keeping one
base in memory with two named peft adapters (``add_adapter`` / ``load_adapter(adapter_name=...)``
/ ``set_adapter``) costs ``base + adapter_vqa + adapter_vsm`` instead of two full models; each
call picks its adapter::

    shared = SharedBackbone.from_adapter_dirs(base, {"vqa": "ckpt/vqa_lora", "vsm": "ckpt/vsm/adapter"})
    answer_logits = shared("vqa", input_ids=..., attention_mask=..., pixel_values=...).logits
    with shared.using("vsm"):
        loc = vsm(...)            # a VSMModel whose llava is shared.peft (see from_vsm)

Frames: every call is one ordinary ``LlavaForConditionalGeneration`` forward: ``input_ids`` /
``attention_mask`` (B, T) int64 with ``<image>`` already expanded, ``pixel_values``
(N_img, 3, S, S) float -> ``logits`` (B, T, V). Only the LoRA layers, the ``<LOC>`` trainable-token
rows and the ``modules_to_save`` copies of the active adapter take part; with another adapter
active they are skipped (LoRA), read through to the base rows (trainable tokens) or replaced by
the original module (``modules_to_save``), so each adapter sees exactly its own separate model.

Limits: one adapter is active at a time for the whole model, so calls must not interleave across
threads; every adapter must have been trained on the same base weights and vocabulary (the shipped
VQA model is a full fine-tune, not an adapter, so today this is a way to deploy, shown by
``eval/bench_shared_backbone.py``). ``modules_to_save`` (the shipped VSM trains its vision tower and
projector in full) are full copies kept per adapter: they share nothing.
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch
from torch import nn

from search.vsm.model import _check_adapter
from seal.core.errors import InputError

if TYPE_CHECKING:
    from peft import PeftConfig, PeftModel
    from transformers import LlavaForConditionalGeneration

    from search.vsm.model import VSMModel

ADAPTER_MARKERS = ("lora_", "trainable_tokens_", "modules_to_save.")
"""Substrings naming the parameters that belong to an adapter (the rest is the shared base)."""


class SharedBackbone(nn.Module):
    """A ``PeftModel`` holding several named adapters on one base; each call selects one.

    Args:
        peft_model: the base LLaVA wrapped by peft, with at least one adapter.
        trainable: keep adapter parameters trainable; False (inference) re-freezes everything after
            each switch (peft's ``set_adapter`` marks the adapter it activates as trainable).
    """

    def __init__(self, peft_model: "PeftModel", trainable: bool = False) -> None:
        super().__init__()
        self.peft = peft_model
        self.trainable = trainable
        if not self.adapter_names:
            raise ValueError("the peft model holds no adapter")
        self._freeze()

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def from_configs(cls, base: "LlavaForConditionalGeneration", configs: Mapping[str, "PeftConfig"],
                     trainable: bool = False) -> "SharedBackbone":
        """Fresh adapters (``get_peft_model`` for the first name, ``add_adapter`` for the others).

        The first adapter is active afterwards.
        """
        from peft import get_peft_model

        items = list(configs.items())
        if not items:
            raise ValueError("configs: expected at least one named adapter")
        (first, first_cfg), rest = items[0], items[1:]
        peft_model = get_peft_model(base, first_cfg, adapter_name=first)
        for name, cfg in rest:
            peft_model.add_adapter(name, cfg)
        peft_model.set_adapter(first)
        return cls(peft_model, trainable)

    @classmethod
    def from_adapter_dirs(cls, base: "LlavaForConditionalGeneration", dirs: Mapping[str, str | Path],
                          trainable: bool = False) -> "SharedBackbone":
        """Load saved peft adapters (``PeftModel.from_pretrained`` for the first one loaded, then
        ``load_adapter(dir, adapter_name=name)``), each strictly: its file must hold exactly the
        tensors its ``adapter_config.json`` creates. The first name of ``dirs`` is active afterwards.

        Adapters without trainable tokens are loaded before those with them: peft 0.21 cannot load
        a token-less adapter once a trainable-tokens wrapper exists (its load map has no guard for
        adapters the wrapper does not serve, so ``load_adapter`` raises ``KeyError``).

        Raises:
            InputError: a directory is missing, unreadable or does not match its config.
        """
        items = [(name, Path(d)) for name, d in dirs.items()]
        if not items:
            raise ValueError("dirs: expected at least one named adapter directory")
        peft_model = None
        for name, d in sorted(items, key=lambda item: _has_trainable_tokens(item[1])):  # stable sort
            peft_model = _load_named_adapter(base if peft_model is None else peft_model, name, d, trainable)
        assert peft_model is not None
        peft_model.set_adapter(items[0][0])
        return cls(peft_model, trainable)

    @classmethod
    def from_vsm(cls, vsm: "VSMModel", dirs: Mapping[str, str | Path], name: str = "vsm") -> "SharedBackbone":
        """Share the base of a loaded, unmerged :class:`VSMModel` with more adapters (e.g. ``{"vqa": dir}``).

        The VSM's adapter is taken out (its tensors and config), the base unloaded, the other
        adapters loaded onto it (:meth:`from_adapter_dirs`), and the VSM adapter added back under
        ``name`` (last, for the peft limit described there). ``vsm.llava`` becomes the shared
        ``PeftModel``, so the VSM keeps working: run it inside ``shared.using(name)``, which is
        also the adapter active afterwards.

        Raises:
            ValueError: ``vsm`` is merged or already shared, ``name`` is also a key of ``dirs``, or
                the VSM adapter's tensors do not fit back.
        """
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        if vsm.is_merged:
            raise ValueError("a merged VSM has no adapter; load the adapter checkpoint instead")
        if name in dirs:
            raise ValueError(f"adapter name {name!r} is already used")
        old = vsm.llava
        if len(old.peft_config) != 1:
            raise ValueError(f"the VSM already holds adapters {list(old.peft_config)}; expected its own one only")
        own = str(old.active_adapter)
        config = copy.deepcopy(old.peft_config[own])
        state = get_peft_model_state_dict(old, adapter_name=own, save_embedding_layers=False)
        shared = cls.from_adapter_dirs(old.unload(), dirs)
        shared.peft.add_adapter(name, config)
        result = set_peft_model_state_dict(shared.peft, state, adapter_name=name)
        missing = [k for k in result.missing_keys if f".{name}." in f"{k}."]
        if missing or result.unexpected_keys:
            raise ValueError(f"the VSM adapter did not fit back (missing {missing[:5]}, "
                             f"unexpected {list(result.unexpected_keys)[:5]})")
        vsm.llava = shared.peft  # nn.Module attribute: replaces the registered submodule
        shared.set_adapter(name)
        shared._freeze()
        return shared

    # ---- adapters ------------------------------------------------------------------------------
    @property
    def adapter_names(self) -> tuple[str, ...]:
        return tuple(self.peft.peft_config)

    @property
    def active_adapter(self) -> str:
        return str(self.peft.active_adapter)

    @property
    def base(self) -> "LlavaForConditionalGeneration":
        """The shared LLaVA (all adapters' layers injected in place)."""
        return self.peft.get_base_model()

    def set_adapter(self, name: str) -> None:
        """Make ``name`` the adapter of the following calls (a no-op when it already is)."""
        if name not in self.peft.peft_config:
            raise KeyError(f"unknown adapter {name!r}; loaded: {list(self.adapter_names)}")
        if name != self.active_adapter:
            self.peft.set_adapter(name)
            self._freeze()

    @contextmanager
    def using(self, name: str) -> Iterator["SharedBackbone"]:
        """Run a block with adapter ``name`` active, then restore the previous adapter."""
        previous = self.active_adapter
        self.set_adapter(name)
        try:
            yield self
        finally:
            self.set_adapter(previous)

    def forward(self, adapter: str, **inputs: Any) -> Any:
        """One LLaVA forward with ``adapter`` active (``inputs`` as for ``LlavaForConditionalGeneration``)."""
        self.set_adapter(adapter)
        return self.peft(**inputs)

    def adapter_parameter_bytes(self) -> dict[str, int]:
        """Bytes of each adapter's own parameters (LoRA, ``<LOC>`` rows, ``modules_to_save`` copies)."""
        out = {name: 0 for name in self.adapter_names}
        for pname, p in self.peft.named_parameters():
            for name in out:
                if any(m in pname for m in ADAPTER_MARKERS) and f".{name}." in f"{pname}.":
                    out[name] += p.numel() * p.element_size()
        return out

    def _freeze(self) -> None:
        if not self.trainable:
            for p in self.peft.parameters():
                p.requires_grad_(False)


def _has_trainable_tokens(adapter_dir: Path) -> bool:
    """``adapter_config.json`` of ``adapter_dir`` trains token rows (unreadable: False, the load reports it)."""
    try:
        return bool(json.loads((adapter_dir / "adapter_config.json").read_text()).get("trainable_token_indices"))
    except (OSError, ValueError, AttributeError):
        return False


def _load_named_adapter(target: "LlavaForConditionalGeneration | PeftModel", name: str, adapter_dir: Path,
                        trainable: bool) -> "PeftModel":
    """Load ``adapter_dir`` as adapter ``name``: wrap a plain ``target``, or ``load_adapter`` into a peft one."""
    from peft import PeftModel

    from seal.core.weights import load_errors, load_safetensors

    if not (adapter_dir / "adapter_config.json").is_file():
        raise InputError("not a peft adapter directory: adapter_config.json is missing", adapter_dir)
    load_safetensors(adapter_dir / "adapter_model.safetensors", what="adapter")  # truncated, corrupt or NaN: one line
    if isinstance(target, PeftModel) and name in target.peft_config:
        raise InputError(f"cannot load adapter {name!r}: the name is already used", adapter_dir)
    with load_errors(adapter_dir, f"adapter {name!r}"):
        if isinstance(target, PeftModel):
            target.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=trainable)
            model = target
        else:
            model = PeftModel.from_pretrained(target, str(adapter_dir), adapter_name=name, is_trainable=trainable)
    _check_adapter(model, adapter_dir, adapter_name=name)
    return model


def unique_parameter_bytes(*modules: nn.Module) -> int:
    """Bytes of the distinct parameter tensors of ``modules`` (a tensor shared by several counts once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for module in modules:
        for p in module.parameters():
            key = (p.data_ptr(), p.numel())
            if key not in seen:
                seen.add(key)
                total += p.numel() * p.element_size()
    return total


def adapter_parameter_bytes(module: nn.Module) -> int:
    """Bytes of the adapter parameters (names with :data:`ADAPTER_MARKERS`) of one peft model."""
    return sum(p.numel() * p.element_size() for n, p in module.named_parameters()
               if any(m in n for m in ADAPTER_MARKERS))


@torch.no_grad()
def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` in float32 (shapes must match)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.float() - b.float()).abs().max())
