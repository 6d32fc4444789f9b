"""``AgentConfig``: the ``agent`` section of the root config (models, answer protocol, search caps).

Paths are local directories. A relative path is looked up in the current directory first, then in
the project root (so ``make demo`` and an installed ``seal`` find ``checkpoints/`` alike); a path
found in neither is an :class:`~seal.errors.InputError` naming both places, never a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seal.errors import ConfigError, InputError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The project checkout (``checkpoints/`` lives here)."""


@dataclass
class AgentConfig:
    vqa_path: str = "checkpoints/vqa_tiny"
    """The VQA LLM checkpoint directory (``VQAModel.load``)."""
    localizer: Literal["vsm", "oracle"] = "vsm"
    """Who answers the search's locate / suggest_region: the trained VSM, or the ground-truth
    oracle (needs a V*Bench annotation per image)."""
    vsm_path: str = "checkpoints/vsm_tiny"
    """The VSM checkpoint directory (``localizer: vsm``)."""
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
    the model's own refusal lists targets). Chosen on the validation suites (README "Measured",
    item 16): the tiny VQA model answers about 1 in 8 V*-style questions from a global view on which
    the target is not legible, mostly wrong, and no threshold separated them from the others."""
    search_targets_cap: int = 4
    """At most this many listed targets are searched per question (in the listed order); the
    rest are recorded as skipped."""
    oracle_tokens_per_patch: int = 576
    """Vision tokens booked per patch the oracle localizer "encodes" (it has no model; 576 is a
    LLaVA-1.5 336 px view). The VSM localizer books its own image-token count."""
    default_policy_checkpoint: str = "checkpoints/policy_tiny"
    """The learned policy used when neither ``policy.baseline_name`` nor ``policy.checkpoint`` is set
    and this directory exists."""
    untrained_policy: str | None = "always_full"
    """The baseline used (and named in every decision's reason) when no policy is configured and
    ``default_policy_checkpoint`` is missing; null = fail instead."""
    device: str = "cpu"
    """Torch device of the VQA LLM and the VSM."""

    def __post_init__(self) -> None:
        if self.localizer not in ("vsm", "oracle"):
            raise ConfigError(f"agent.localizer: expected 'vsm' or 'oracle', found {self.localizer!r}")
        if self.answer_protocol not in ("likelihood", "letter"):
            raise ConfigError(f"agent.answer_protocol: expected 'likelihood' or 'letter', found {self.answer_protocol!r}")
        if self.list_targets_above is not None and not 0.0 <= self.list_targets_above <= 1.0:
            raise ConfigError(f"agent.list_targets_above: expected a probability 0..1 or null, found "
                              f"{self.list_targets_above}")
        for name in ("max_new_tokens", "search_targets_cap", "oracle_tokens_per_patch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"agent.{name}: expected >= 1, found {getattr(self, name)}")
        for name in ("vqa_path", "vsm_path"):
            if not getattr(self, name):
                raise ConfigError(f"agent.{name}: expected a directory, found an empty string")


def resolve_dir(path: str | Path, field: str) -> Path:
    """``path`` as an existing directory (relative: the current directory, then the project root).

    Raises:
        InputError: neither place holds the directory (the message names the config field).
    """
    p = Path(path)
    candidates = [p] if p.is_absolute() else [p, PROJECT_ROOT / p]
    for c in candidates:
        if c.is_dir():
            return c
    where = " or ".join(str(c) for c in candidates)
    raise InputError(f"{field}: no such model directory ({where}); train it or set --{field}=DIR")


def find_dir(path: str | Path) -> Path | None:
    """Like :func:`resolve_dir` but None when missing (for optional defaults)."""
    p = Path(path)
    for c in ([p] if p.is_absolute() else [p, PROJECT_ROOT / p]):
        if c.is_dir():
            return c
    return None


def learned_policy_dir(checkpoint: str | Path | None, default: str | Path | None) -> Path | None:
    """The trained head a learned policy decides with: ``policy.checkpoint`` when set, else
    ``agent.default_policy_checkpoint``; None when that directory does not exist."""
    path = checkpoint or default
    return find_dir(path) if path else None
