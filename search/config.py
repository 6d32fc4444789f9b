"""``SearchConfig``: every number the reference V* search hard-coded, as a typed, validated field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seal.errors import ConfigError

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

    confirm_zoom: float = 1.25
    """A confident hit at a node above the leaves is only trusted after a closer look: the
    localizer is asked again on a square window of ``confirm_zoom`` x the leaf side centred on the
    box (one call), and that window's detection replaces the node's (it stops the search if it too
    scores above ``confidence_high``). At coarse nodes a target is a few input pixels and near
    misses fire alike; the leaf-scale view tells them apart. 0 = off (the reference: trust any
    node's score)."""

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
    and the shipped tiny localizers see 128-224 px inputs. ``configs/search_reference.yaml`` restores 4."""
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

    verify_threshold: float = 0.5
    """With a verifier (:mod:`search.verifier`, e.g. the VQA LLM reading the named colour or
    pattern back from a crop of the box), a confident hit stops the search only if the verifier
    gives it at least this probability. A rejected box is not returned (but see ``verify_floor``),
    and boxes overlapping it (IoU > ``nms_iou``) are not asked about again. Without a verifier
    nothing changes."""
    max_verifications: int = 16
    """Verifier calls per target; once they are spent, hits are trusted as without a verifier."""
    verify_per_node: int = 2
    """Confident boxes of one node checked, best first (a patch may hold a near miss and the target)."""
    verify_fallback_top: int = 3
    """Without a verified confident hit, at most this many of the visited nodes' best boxes scoring
    ``>= confidence_low`` are checked, best first; the first one accepted is the anytime fallback, and
    if all are rejected the target is not found."""

    verify_floor: float = 0.05
    """When no box was accepted, the most probable rejected one with at least this probability is
    the fallback after all; 0 = off (a rejected box is never returned)."""

    select: Literal["auto", "first", "best"] = "auto"
    """Which confident hit is the answer. ``first`` (the reference): the first one accepted stops the
    search. ``auto`` (the default): ``best`` when a verifier checks the hits, else ``first`` (a
    comparison of unchecked hits has only the localizer's scores to go by, and the simulated
    ``oracle`` stays the reference's search); also ``first`` when the verifier did not judge the
    first confident hit (it abstained on the name, or its budget was spent). ``best``: the first one opens a comparison; the search visits ``compare_nodes`` more nodes
    (or until the frontier or a budget ends it), each node's accepted confident boxes are
    candidates (``verify_per_node`` of them are checked, not just up to the first accepted), and the
    answer is the candidate with the highest verifier probability x localizer score (a box the
    verifier did not judge counts with ``verify_threshold``; without a verifier: the best score).
    Near misses the verifier only half reads (a colour checked, the shape not) lose to the target
    when both are seen."""
    compare_nodes: int = 8
    """``select: best``: visits after the first accepted hit."""
    compare_rejected: bool = True
    """``select: best``: a confident box the verifier rejected with probability ``>= verify_floor`` is a
    candidate too (and opens the comparison), so the verifier ranks the hits instead of gating them:
    for a verifier that reads an attribute well enough to order boxes but sometimes rejects the
    target (a shape reader). An accepted box still outranks a rejected one of the same score."""

    seed: int = 0
    """Seed of the random baselines."""

    def selection(self, checked: bool) -> str:
        """``select`` with ``auto`` decided: ``best`` when a verifier checks the hits (``checked``)."""
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
        if self.confirm_zoom != 0 and not 0.5 <= self.confirm_zoom <= 4.0:
            raise ConfigError(f"search.confirm_zoom: expected 0 (off) or 0.5..4 leaf sides, found {self.confirm_zoom}")
        if self.max_nodes < 1 or self.max_model_calls < 1:
            raise ConfigError(
                f"search.max_nodes / max_model_calls: expected >= 1, found {self.max_nodes} / {self.max_model_calls}"
            )
        if self.deadline_s < 0:
            raise ConfigError(f"search.deadline_s: expected >= 0, found {self.deadline_s}")
        if self.max_instances < 1:
            raise ConfigError(f"search.max_instances: expected >= 1, found {self.max_instances}")
        if not 0.0 <= self.verify_threshold <= 1.0:
            raise ConfigError(f"search.verify_threshold: expected 0..1, found {self.verify_threshold}")
        if not 0.0 <= self.verify_floor <= self.verify_threshold:
            raise ConfigError(f"search.verify_floor: expected 0 <= floor <= verify_threshold ({self.verify_threshold}), "
                              f"found {self.verify_floor}")
        if min(self.max_verifications, self.verify_fallback_top) < 0 or self.verify_per_node < 1:
            raise ConfigError("search.max_verifications / verify_fallback_top: expected >= 0, verify_per_node: >= 1; "
                              f"found {self.max_verifications} / {self.verify_fallback_top} / {self.verify_per_node}")
        if self.select not in ("auto", "first", "best"):
            raise ConfigError(f"search.select: expected auto, first or best, found {self.select!r}")
        if self.compare_nodes < 0:
            raise ConfigError(f"search.compare_nodes: expected >= 0, found {self.compare_nodes}")
        if self.compare_rejected and self.select == "first":
            raise ConfigError("search.compare_rejected: needs select: best or auto (with first, a rejected box never "
                              "stops the search; see verify_floor)")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(f"search.nms_iou: expected 0 < iou <= 1, found {self.nms_iou}")

    def cue_threshold(self, level: int) -> float:
        """Max-logit threshold below which the target heatmap at ``level`` (root = 0) is weak."""
        return max(self.cue_threshold_floor, self.cue_threshold_base * self.cue_threshold_decay ** level)
