"""The agent's configuration: the ``models`` and ``agent`` sections, and ``AskConfig``, the one
config of ``seal ask`` / ``seal eval`` composed of every section the agent reads.

Model paths are local directories, found by :func:`seal.core.paths.resolve_dir` (the current
directory, then the project root); a missing one is an error naming the field, never a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from search.config import SearchConfig
from search.oracle_config import OracleConfig
from seal.core.errors import ConfigError
from seal.core.image_io import ImageConfig
from seal.policy.config import PolicyConfig
from search.hit_check.config import HitCheckConfig
from vwm.budget import VisionBudgetConfig
from vwm.layout import VWMConfig


@dataclass
class ModelsConfig:
    """The ``models`` section: which checkpoints answer and search, and where they run."""

    vqa_path: str = "checkpoints/vqa_tiny"
    """The VQA LLM checkpoint directory (``VQAModel.load``): ours, or any local ``save_pretrained``
    checkpoint of model type ``llava``, ``llava_onevision`` or ``qwen2_5_vl`` (with its processor and
    chat template). A learned policy head must have been fitted to it."""
    localizer: Literal["vsm", "oracle"] = "vsm"
    """Who answers the search's locate / suggest_region: the trained search model (VSM), or the
    ground-truth oracle (needs a V*Bench annotation per image)."""
    vsm_path: str = "checkpoints/vsm_tiny"
    """The search model's checkpoint directory (``localizer: vsm``)."""
    device: str = "cpu"
    """Torch device of the VQA LLM and the search model."""
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Parameter dtype of the VQA LLM (``bf16`` / ``fp16`` halve the memory of a 7B model)."""
    device_map: str = ""
    """Passed to the VQA LLM's ``from_pretrained`` (e.g. ``auto``: spread over the GPUs and the CPU,
    needs accelerate); empty = load, then move to ``device``."""

    def __post_init__(self) -> None:
        if self.localizer not in ("vsm", "oracle"):
            raise ConfigError(f"models.localizer: expected 'vsm' or 'oracle', found {self.localizer!r}")
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"models.dtype: expected 'fp32', 'bf16' or 'fp16', found {self.dtype!r}")
        if self.device_map not in ("", "auto", "balanced", "balanced_low_0", "sequential") \
                and not self.device_map.startswith(("cpu", "cuda", "mps")):
            raise ConfigError(f"models.device_map: expected '', 'auto', 'balanced', 'balanced_low_0', 'sequential' "
                              f"or a device such as 'cuda:0', found {self.device_map!r}")
        for name in ("vqa_path", "vsm_path"):
            if not getattr(self, name):
                raise ConfigError(f"models.{name}: expected a directory, found an empty string")


@dataclass
class AgentConfig:
    """The ``agent`` section: how the agent answers (protocol, decoding, target listing, caps)."""

    answer_protocol: Literal["likelihood", "letter"] = "likelihood"
    """Multiple choice: mean option log-likelihood (V*Bench) or the letter of ``(A) ...`` lines."""
    max_new_tokens: int = 48
    """Greedy decoding limit of free-form answers (and of the refusal that lists targets)."""
    cache_reuse: bool = True
    """Reuse the text-only pass's KV cache when the NO-vision answer reads the same prompt
    (recorded in every result, with whether it was used and why not)."""
    text_pass_options: bool = False
    """Show the options (``(A) ...`` lines) in the text-only pass; False = the question alone."""
    list_targets_above: float | None = 0.0
    """FULL vision: when the greedy reply on the global view answers instead of refusing, the
    refusal is generated anyway (its fixed prefix forced) and the targets it lists are searched,
    if the refusal's first token had at least this probability (:meth:`VQAModel.refusal_probability`,
    one more forward); 0 (the default) = always, without the probe; null = never (the reference: only
    the model's own refusal lists targets). Chosen on the validation suites (docs/RESULTS.md): the
    tiny VQA model answers about 1 in 8 V*-style questions from a global view on which the target is
    not legible, mostly wrong, and no threshold separated them from the others."""
    search_targets_cap: int = 4
    """At most this many listed targets are searched per question (in the listed order); the
    rest are recorded as skipped."""
    oracle_tokens_per_patch: int = 576
    """Vision tokens booked per patch the oracle localizer "encodes" (it has no model; 576 is a
    LLaVA-1.5 336 px view). The search model books its own image-token count."""

    def __post_init__(self) -> None:
        if self.answer_protocol not in ("likelihood", "letter"):
            raise ConfigError(f"agent.answer_protocol: expected 'likelihood' or 'letter', found "
                              f"{self.answer_protocol!r}")
        if self.list_targets_above is not None and not 0.0 <= self.list_targets_above <= 1.0:
            raise ConfigError(f"agent.list_targets_above: expected a probability 0..1 or null, found "
                              f"{self.list_targets_above}")
        for name in ("max_new_tokens", "search_targets_cap", "oracle_tokens_per_patch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"agent.{name}: expected >= 1, found {getattr(self, name)}")


@dataclass
class SearchCommandConfig:
    """``seal search``: the sections one search reads (the models, the search, its hit check)."""

    seed: int = 0
    """The run's one seed: the random search baselines' order and the oracle's simulated noise."""
    image: ImageConfig = field(default_factory=ImageConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    hit_check: HitCheckConfig = field(default_factory=HitCheckConfig)
    vision_budget: VisionBudgetConfig = field(default_factory=VisionBudgetConfig)
    vwm: VWMConfig = field(default_factory=VWMConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)


@dataclass
class AskConfig(SearchCommandConfig):
    """``seal ask`` and ``seal eval``: the search's sections plus how the agent answers and decides."""

    agent: AgentConfig = field(default_factory=AgentConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
