"""``SearchConfig``: every number the reference V* search hard-coded, as a typed, validated field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from search.vsm.config import TokenCutConfig
from seal.core.errors import ConfigError

Strategy = Literal["vstar", "bfs", "dfs", "random-bfs", "random-dfs"]


@dataclass
class SearchConfig:
    strategy: Strategy = "vstar"
    """Expansion order: ``vstar`` (heatmap-guided best-first) or a blind baseline."""

    confidence_high: float = 0.5
    """Stop as soon as a visited node holds a detection scoring above this (reference: 0.5)."""
    confidence_low: float = 0.3
    """Anytime fallback: when the search ends without a confident hit, return the best box seen if
    it scores at least this (reference: 0.3); otherwise the target is reported not found."""

    split_aspect_ratio: float = 2.0
    """A patch whose long/short side ratio is >= this splits into 1x4 / 4x1 strips, else 2x2."""
    overlap: float = 0.1
    """Neighbouring children overlap by this fraction of their tile size (each tile grows by
    ``overlap / 2`` per side, clamped to the parent), so objects on tile borders are not cut
    (reference: 0.0). The tree's shape does not depend on it."""
    leaf_divisor: int = 8
    """Leaf rule: a node is a leaf when its *tile*'s short side <= max(ceil(min(W, H) /
    leaf_divisor), min_leaf_side) of the full image. Reference: 4 (3 levels on V*Bench, with a 768 px
    detector input); ours: 8, one level deeper, because SynthVStar targets are ~2% of the long side
    and the shipped tiny localizers see 128-224 px inputs. ``configs/ablations/search_reference.yaml`` restores 4."""
    min_leaf_side: int = 224

    priority_scorer: Literal["ancestor_decay", "parent_only", "max"] = "ancestor_decay"
    """How heatmap evidence of a node's ancestors combines into its priority."""
    level_weight_base: float = 4.0
    """``ancestor_decay`` weights the evidence seen at level l by ``1 / base**l`` (reference: 4)."""
    detection_priority_weight: float = 1.0
    """Weight of a child's own best detection score in its priority (children are scored in one
    batch when their parent is expanded)."""

    context_cue: bool = True
    """Ask the localizer where the target is likely to be when the target heatmap is weak."""
    cue_threshold_base: float = 6.0
    cue_threshold_decay: float = 0.7
    cue_threshold_floor: float = 3.0
    """The target heatmap is weak at level l (root = 0) when its max logit <= max(floor, base *
    decay**l) (reference: 6.0, 0.7, 3.0 on raw logits, root counted as level 1 there)."""

    jump_levels: int = 0
    """Levels the root's expansion skips: 0 expands the root into its children (the reference); k
    locates the nodes k + 1 levels down instead, all in one batched call (a leaf met on the way is
    taken as it is), so the search starts at the scale where the model can read a small target
    instead of visiting every level between. Their priorities come from the root's heatmap and
    their own detections, as children's do."""
    root_check: int = 0
    """With a hit check (and not ``multi_instance``): the check reads the root's ``root_check`` best
    boxes in one batch, whatever their localizer scores, and the most probable one at or above
    ``root_check_threshold`` answers at the root (a large target, which the localizer sees at the
    root but scores low). 0: off (the reference)."""
    root_check_threshold: float = 0.9
    """The hit-check probability a root box needs under ``root_check``."""
    root_check_min_side: float = 0.0
    """``root_check`` reads only root boxes whose long side is at least this share of the image's
    long side (a large target's box; a search for a small one then costs no check at the root)."""

    max_nodes: int = 64
    """Budget: nodes visited (popped and examined) per target."""
    max_model_calls: int = 256
    """Budget: localizer calls (one batched ``locate`` or one ``suggest_region`` each)."""
    deadline_s: float = 0.0
    """Budget: wall-clock seconds per target; 0 = none. Budgets never raise: best answer so far."""

    multi_instance: bool = False
    """Keep searching after the first confident hit and return every instance (counting)."""
    max_instances: int = 32
    nms_iou: float = 0.5
    """Detections overlapping a kept one by more than this IoU are the same instance."""
    min_priority: float = 0.0
    """Nodes whose priority is below this are not expanded (prunes multi-instance search)."""

    select: Literal["auto", "first", "best"] = "auto"
    """Which confident hit is the answer. ``first`` (the reference): the first one accepted stops the
    search. ``auto`` (the default): ``best`` when a hit check judges the hits, else ``first`` (a
    comparison of unchecked hits has only the localizer's scores to go by, and the simulated
    ``oracle`` stays the reference's search); also ``first`` when the hit check did not judge the
    first confident hit (it abstained on the name, or its budget was spent). ``best``: the first one
    opens a comparison; the search visits ``compare_nodes`` more nodes (or until the frontier or a
    budget ends it), each node's accepted confident boxes are candidates (``hit_check.per_node`` of
    them are checked, not just up to the first accepted), and the answer is the candidate with the
    highest hit-check probability x localizer score (a box the check did not judge counts with
    ``hit_check.threshold``; without a check: the best score). Near misses the check only half
    reads (a colour checked, the shape not) lose to the target when both are seen."""
    compare_nodes: int = 8
    """``select: best``: visits after the first accepted hit."""
    compare_rejected: bool = True
    """``select: best``: a confident box the hit check rejected with probability ``>= hit_check.floor``
    is a candidate too (and opens the comparison), so the check ranks the hits instead of gating them:
    for a check that reads an attribute well enough to order boxes but sometimes rejects the target
    (a shape reader). An accepted box still outranks a rejected one of the same score."""

    token_cut: TokenCutConfig = field(default_factory=TokenCutConfig)
    """The search model's token cut: which of a patch's image tokens its LM reads (``none``: all;
    :class:`search.vsm.config.TokenCutConfig`). Read by the ``vsm`` localizer, not by the search
    algorithm."""

    def selection(self, checked: bool) -> str:
        """``select`` with ``auto`` decided: ``best`` when a hit check judges the hits (``checked``)."""
        if self.select != "auto":
            return self.select
        return "best" if checked else "first"

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence_low <= self.confidence_high <= 1.0:
            raise ConfigError(
                "search.confidence_low / confidence_high: need 0 <= low <= high <= 1, found "
                f"{self.confidence_low} / {self.confidence_high}"
            )
        if not 0.0 <= self.overlap < 0.5:
            raise ConfigError(f"search.overlap: expected 0 <= overlap < 0.5, found {self.overlap}")
        if self.split_aspect_ratio < 1.0:
            raise ConfigError(f"search.split_aspect_ratio: expected >= 1, found {self.split_aspect_ratio}")
        if self.leaf_divisor < 1 or self.min_leaf_side < 1:
            raise ConfigError("search.leaf_divisor and search.min_leaf_side must be >= 1")
        if self.level_weight_base <= 0:
            raise ConfigError(f"search.level_weight_base: expected > 0, found {self.level_weight_base}")
        if self.max_nodes < 1 or self.max_model_calls < 1:
            raise ConfigError(
                f"search.max_nodes / max_model_calls: expected >= 1, found {self.max_nodes} / {self.max_model_calls}"
            )
        if self.deadline_s < 0:
            raise ConfigError(f"search.deadline_s: expected >= 0, found {self.deadline_s}")
        if self.max_instances < 1:
            raise ConfigError(f"search.max_instances: expected >= 1, found {self.max_instances}")
        if self.select not in ("auto", "first", "best"):
            raise ConfigError(f"search.select: expected auto, first or best, found {self.select!r}")
        if self.compare_nodes < 0:
            raise ConfigError(f"search.compare_nodes: expected >= 0, found {self.compare_nodes}")
        if self.compare_rejected and self.select == "first":
            raise ConfigError("search.compare_rejected: needs select: best or auto (with first, a rejected box never "
                              "stops the search; see hit_check.floor)")
        for name in ("jump_levels", "root_check"):
            if getattr(self, name) < 0:
                raise ConfigError(f"search.{name}: expected >= 0, found {getattr(self, name)}")
        if not 0.0 <= self.root_check_min_side < 1.0:
            raise ConfigError(f"search.root_check_min_side: expected 0 <= share < 1, found {self.root_check_min_side}")
        if not 0.0 < self.root_check_threshold <= 1.0:
            raise ConfigError(f"search.root_check_threshold: expected 0 < p <= 1, found {self.root_check_threshold}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(f"search.nms_iou: expected 0 < iou <= 1, found {self.nms_iou}")

    def cue_threshold(self, level: int) -> float:
        """Max-logit threshold below which the target heatmap at ``level`` (root = 0) is weak."""
        return max(self.cue_threshold_floor, self.cue_threshold_base * self.cue_threshold_decay ** level)
