"""``build_hit_check``: the one place a search's hit check is assembled (agent, ``seal search``,
``seal eval``).

Members, cheapest first, combined by :class:`~search.hit_check.protocol.AllChecks`:

1. the search model's crop matcher (``hit_check.crop_matcher``, when the localizer carries one);
2. the VQA LLM reading the named words (``hit_check.vqa``: by default only without a crop matcher).

The VQA LLM is loaded only when it checks: ``load_vqa(path)`` is called with ``hit_check.vqa_path``
(None = the answering model) and returns the model and the asking settings its checkpoint recorded.
"""

from __future__ import annotations

from typing import Any, Callable

from search.hit_check.config import HitCheckConfig
from search.hit_check.crop_matcher import CropMatcherCheck
from search.hit_check.protocol import AllChecks, HitCheck
from search.hit_check.words import OptionScorer, VQAWordCheck
from search.localizer import Localizer
from vwm.budget import VisionBudget, VisionBudgetConfig

VQALoader = Callable[[str | None], tuple[OptionScorer, dict[str, Any]]]
"""``load_vqa(hit_check.vqa_path) -> (model, asking settings)``; None = the answering model."""


def crop_matcher_of(cfg: HitCheckConfig, localizer: Localizer) -> Any | None:
    """The localizer's crop matcher when the section uses it (``crop_matcher`` on, the localizer has one)."""
    return getattr(localizer, "crop_matcher", None) if cfg.crop_matcher else None


def uses_vqa(cfg: HitCheckConfig, localizer: Localizer) -> bool:
    """Whether the VQA LLM checks ``localizer``'s boxes (so it must be loaded)."""
    return cfg.applies_to(localizer.name) and cfg.uses_vqa(crop_matcher_of(cfg, localizer) is not None)


def build_hit_check(cfg: HitCheckConfig, localizer: Localizer, load_vqa: VQALoader | None = None,
                    budget: VisionBudgetConfig | None = None) -> HitCheck | None:
    """The hit check of ``localizer``'s boxes, or None when the section does not apply to it or no
    member is left (no crop matcher, and no VQA LLM wanted or ``load_vqa`` None).

    Args:
        cfg: the ``hit_check`` section.
        localizer: the search's localizer (its ``name`` and optional ``crop_matcher``).
        load_vqa: loads the checking VQA LLM (see :data:`VQALoader`); called only when it checks.
        budget: the ``vision_budget`` section (the global view the VQA check shows); None = defaults.
    """
    if not cfg.applies_to(localizer.name):
        return None
    members: list[HitCheck] = []
    matcher = crop_matcher_of(cfg, localizer)
    if matcher is not None:
        members.append(CropMatcherCheck(matcher))
    if load_vqa is not None and uses_vqa(cfg, localizer):
        vqa, settings = load_vqa(cfg.vqa_path)
        members.append(VQAWordCheck(vqa, cfg.asked_as(settings), VisionBudget(
            budget or VisionBudgetConfig(), vqa.processor, getattr(vqa, "vision_tokens_read", None))))
    if not members:
        return None
    return members[0] if len(members) == 1 else AllChecks(members, cfg.threshold)
