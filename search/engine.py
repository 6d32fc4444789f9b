"""The V* search loop: iterative search over one global frontier of image patches.

Read top to bottom (:meth:`_Search.run`):

1. Locate the target in the root (the full image), alone: 1 model call.
2. Pop a node from the frontier (the strategy decides which; see :mod:`search.frontier`). It is
   *visited*. Its best detection (known since it was located) decides: ``> confidence_high`` is a
   confident hit and the search stops (multi-instance mode: its confident boxes are recorded,
   deduplicated by NMS, and the search goes on). Above the leaves a confident hit is first
   looked at again on a leaf-scale window around its box (``hit_check.zoom``: 1 call), whose
   detection then stands for the node.
   With ``root_check`` and a hit check, the root's large boxes are read by the check whatever
   their scores (in the same batch as its children's confident boxes): a box it is sure of (a large
   target) answers at the root.
3. Unless it is a leaf (or the search stops, or its priority is below ``min_priority``), expand it:
   choose the heatmap that guides its children (its target heatmap, or, when that is weak and
   ``context_cue`` is on, the localizer's contextual cue: 1 call), split it, locate all children
   in ONE batched call, give each child a priority (ancestors' heatmap evidence over the child +
   weighted own detection score, :mod:`search.priority`) and push them. The root's expansion may
   jump ``jump_levels`` levels: it locates the nodes that many levels further down instead.
4. Repeat until a confident hit, an empty frontier or a budget (:mod:`search.budget`). Budgets
   never raise. Without a confident hit, the best box of any visited node is the anytime fallback
   (:mod:`search.result`).

With ``select: best`` (the default ``auto`` when a hit check judges the hits) the first confident hit
does not stop the search at once: ``compare_nodes`` more nodes are visited and the best of the
confident hits seen is the answer (``search.config``).

With a :class:`~search.hit_check.protocol.HitCheck`, a confident hit (after its zoom) stops the
search only when the check accepts it, and the fallback is the best box it accepts; a node whose hits
were rejected is expanded like any other (:mod:`search.hit_check.rules` has the rules).

Only the ``Localizer`` and ``HitCheck`` protocols are used: no torch model is imported here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from search.budget import Budget
from search.config import SearchConfig
from search.frontier import make_frontier
from seal.core.geometry import box_window_xyxy
from seal.core.image_source import ImageSource
from search.localizer import Detection, Localizer
from search.priority import ancestor_evidence, make_scorer
from search.result import InstanceSet, SearchResult
from search.trace import SearchTrace
from search.tree import Box, Node, descend, is_leaf, leaf_side
from search.hit_check.config import HitCheckConfig
from search.hit_check.protocol import HitCheck
from search.hit_check.rules import CheckedBox, HitCheckState, rank


@dataclass
class StepEvent:
    """One visited node, reported right after its visit. Boxes: full-image ``xyxy`` pixels."""

    visit_order: int  # 1-based
    node_id: int
    box_xyxy: tuple
    level: int  # root 0
    priority: float
    best_score: float  # the node's own best detection score
    best_box_xyxy: tuple | None
    cue: str  # "target" | "context" | "none" (see search.trace)
    heatmap_max: float  # max logit of the node's target heatmap
    queue_size: int  # frontier size after the visit
    hit_check_score: float = -1.0  # the hit check's best probability at this node, -1.0 if not asked


def run_search(localizer: Localizer, image: ImageSource, target: str, cfg: SearchConfig,
               on_step: Callable[[StepEvent], None] | None = None, set_image: bool = True,
               hit_check: HitCheck | None = None, check_cfg: HitCheckConfig | None = None,
               seed: int = 0) -> SearchResult:
    """Search ``image`` for ``target``; never raises on a budget.

    ``set_image=False`` when the localizer (and the hit check) already hold this image (see
    :class:`SearchSession`). ``on_step`` is called after each visit. ``check_cfg`` (the ``hit_check``
    section; default values when None) sets the zoom and the rules of ``hit_check``; ``seed`` orders
    the random baselines (``random-bfs``, ``random-dfs``). Localizer and hit-check errors propagate.
    """
    search = _Search(localizer, image, target, cfg, on_step, hit_check, check_cfg or HitCheckConfig(), seed)
    if set_image:
        search.budget.timed(lambda: localizer.set_image(image))
        if hit_check is not None:
            hit_check.set_image(image)
    return search.run()


class _Search:
    def __init__(self, localizer: Localizer, image: ImageSource, target: str, cfg: SearchConfig,
                 on_step: Callable[[StepEvent], None] | None, hit_check: HitCheck | None,
                 check_cfg: HitCheckConfig, seed: int = 0) -> None:
        self.loc, self.image, self.target, self.cfg, self.on_step = localizer, image, target, cfg, on_step
        self.hcfg = check_cfg
        self.budget = Budget(cfg)
        self.frontier = make_frontier(cfg.strategy, seed)
        self.scorer = make_scorer(cfg)
        self.leaf_side = leaf_side(image.width, image.height, cfg)
        self.trace = SearchTrace(config={**asdict(cfg), "hit_check": asdict(check_cfg)})
        self.nodes: list[Node] = []
        self.best: Node | None = None  # visited node with the best detection so far
        self.instances = InstanceSet(cfg.nms_iou)
        self.blocked: str | None = None  # budget that prevented an expansion
        self.checks = (None if hit_check is None or cfg.multi_instance
                       else HitCheckState(hit_check, target, cfg, check_cfg))
        self.select = cfg.selection(checked=self.checks is not None)  # ``auto`` decided
        self.unchecked: list[CheckedBox] = []  # confident hits without a check (with one: checks.accepted)
        self.compare_end: int | None = None  # select: best: the visit that closes the comparison
        self.final_check: float | None = None  # the hit check's probability for the returned box
        self.visited: list[Node] = []
        self.box_levels: dict[Box, int] = {}  # each box a visit saw -> the level of the node that saw it

    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        root = self._new_node(self.image.full_box(), self.image.full_box(), parent=None)
        self._locate([root])
        root.priority = self.scorer.priority([], root.best_score)
        self.trace.update(root.node_id, priority=root.priority, model_calls=1, seconds=time.perf_counter() - t0)
        self.frontier.push([root])
        while True:
            if not len(self.frontier):
                stop = self.blocked or "exhausted"
                break
            stop = self.budget.stop_reason()
            if stop:
                break
            node = self.frontier.pop()
            confident = self._visit(node)
            if self.cfg.multi_instance and len(self.instances) >= self.cfg.max_instances:
                stop = "instances_cap"
                break
            if (confident and not self.cfg.multi_instance and self.select == "first") or self._comparison_over():
                stop = "confident"
                break
        return self._result(stop)

    def _visit(self, node: Node) -> bool:
        """Visit ``node``: record it, expand it if due. Returns whether it holds a confident hit."""
        t0, calls0 = time.perf_counter(), self.budget.model_calls
        self.budget.nodes_visited += 1
        self.visited.append(node)
        det = node.detection
        assert det is not None  # every node is located before it enters the frontier
        zoom_score, check_score = -1.0, -1.0
        if det.best_score > self.cfg.confidence_high and self._should_zoom(node):
            det = node.detection = self._zoom(node, det)
            zoom_score = det.best_score
        for b in det.boxes_xyxy:
            self.box_levels.setdefault(_floats(b), node.level)
        if self.best is None or det.best_score > self.best.best_score:
            self.best = node
        confident = det.best_score > self.cfg.confidence_high
        if confident and self.checks is not None:
            hits, check_score = self.checks.confident_hits(det.boxes_xyxy, det.scores)
            confident = bool(hits)
            if confident and self.cfg.select == "auto" and self.compare_end is None \
                    and all(v.probability is None for v in hits):
                self.select = "first"  # nothing judged the first hit (abstained, budget spent): no ranking
        elif confident and not self.cfg.multi_instance:
            self.unchecked.append(CheckedBox(det.best_box, det.best_score, None))  # type: ignore[arg-type]
        if confident and self.select == "best" and not self.cfg.multi_instance and self.compare_end is None:
            self.compare_end = self.budget.nodes_visited + self.cfg.compare_nodes
        if confident and self.cfg.multi_instance:
            self.instances.add(det.boxes_xyxy, det.scores, self.cfg.confidence_high)
        target_max = float(det.heatmap.max())
        heat, cue = det.heatmap, "none"
        if self._should_expand(node, confident):
            heat, cue = self._guiding_heatmap(node, target_max)
            self.trace.heatmaps[node.node_id] = heat  # read by _expand: the priorities use it
            if not self._expand(node) and cue == "target":
                cue = "none"  # a budget stopped the expansion: the heatmap guided nothing
        root_hit = None if confident else self._root_hit(node, det)  # read with the children's boxes
        if root_hit is not None:
            confident, check_score = True, float(root_hit.probability)  # type: ignore[arg-type]
            self.select = "first"  # a root hit stops the search: the check was sure (root_check_threshold)
        self.trace.heatmaps[node.node_id] = heat
        charged = self.trace.graph.nodes[node.node_id]  # the root's own locate is charged before its visit
        self.trace.update(node.node_id, visit_order=self.budget.nodes_visited, best_score=det.best_score,
                          best_box_xyxy=list(det.best_box or []), cue=cue, heatmap_max=target_max,
                          zoom_score=zoom_score, hit_check_score=check_score,
                          model_calls=charged["model_calls"] + self.budget.model_calls - calls0,
                          seconds=charged["seconds"] + time.perf_counter() - t0)
        if self.on_step is not None:
            self.on_step(StepEvent(self.budget.nodes_visited, node.node_id, node.box, node.level, node.priority,
                                   det.best_score, det.best_box, cue, target_max, len(self.frontier), check_score))
        return confident

    def _root_hit(self, node: Node, det: Detection) -> CheckedBox | None:
        """``search.root_check`` at the root: the hit check's verdict on its best boxes, read in one
        batch whatever their scores (None: off, not the root, or nothing accepted)."""
        if node.parent >= 0 or not self.cfg.root_check or self.checks is None:
            return None
        hits = self.checks.root_hits(*self._root_boxes(det))
        return hits[0] if hits else None

    def _root_boxes(self, det: Detection) -> tuple[np.ndarray, np.ndarray]:
        """The root's boxes ``root_check`` reads: ``(K, 4)`` boxes and ``(K,)`` scores, best first, at
        most ``root_check``, each at least ``root_check_min_side`` of the image's long side."""
        boxes = det.boxes_xyxy
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        large = side >= self.cfg.root_check_min_side * max(self.image.width, self.image.height)
        return boxes[large][:self.cfg.root_check], det.scores[large][:self.cfg.root_check]

    def _should_zoom(self, node: Node) -> bool:
        return (bool(self.hcfg.zoom) and not node.leaf and not self.cfg.multi_instance
                and self.budget.call_blocker() is None)

    def _zoom(self, node: Node, det: Detection) -> Detection:
        """Locate again on a leaf-scale window around ``det``'s best box (1 call); the window's
        boxes and scores with the node's own heatmap (which keeps guiding the expansion)."""
        window = box_window_xyxy(det.best_box, self.hcfg.zoom * self.leaf_side,  # type: ignore[arg-type]
                                 self.image.width, self.image.height)
        (closer,) = self._located([window])
        return Detection(closer.boxes_xyxy, closer.scores, det.heatmap)

    def _should_expand(self, node: Node, confident: bool) -> bool:
        if node.leaf or (confident and not self.cfg.multi_instance and self.select == "first"):
            return False  # (select: best expands a hit's node: the comparison may need what else it holds)
        if self._comparison_over():
            return False  # the search stops after this visit: children would be located for nothing
        return node.parent < 0 or node.priority >= self.cfg.min_priority

    def _comparison_over(self) -> bool:
        """``select: best``: the visits of the comparison are used up."""
        return self.compare_end is not None and self.budget.nodes_visited >= self.compare_end

    def _guiding_heatmap(self, node: Node, target_max: float) -> tuple[np.ndarray, str]:
        """The target heatmap, or the contextual cue when the target heatmap is weak (1 call)."""
        det = node.detection
        assert det is not None
        weak = self.cfg.context_cue and target_max <= self.cfg.cue_threshold(node.level)
        if not weak or self.budget.call_blocker(calls=2):  # keep a call for locating the children
            return det.heatmap, "target"
        cue = self.budget.timed(lambda: self.loc.suggest_region(self.target, node.box))
        self.budget.model_calls += 1
        if cue is None:
            return det.heatmap, "target"
        return _checked_heatmap(cue, self.loc, "suggest_region"), "context"

    def _expand(self, node: Node) -> bool:
        """Split ``node``, locate its children in one call, score and push them. False if a budget
        forbids the call."""
        blocker = self.budget.call_blocker()
        if blocker:
            self.blocked = blocker
            return False
        levels = 1 + (self.cfg.jump_levels if node.parent < 0 else 0)
        children = [self._new_node(tile, box, parent=node, level=node.level + depth)
                    for tile, box, depth in descend(node.tile, node.box, self.cfg, self.leaf_side, levels)]
        self._locate(children)
        if self.checks is not None:  # a batched check reads their confident boxes now, in one pass
            root = [self._root_boxes(node.detection)] if node.parent < 0 and self.cfg.root_check else []  # type: ignore
            self.checks.prefetch([(c.detection.boxes_xyxy, c.detection.scores) for c in children  # type: ignore
                                  if c.detection is not None], extra=root)
        guides = [(self.trace.heatmaps[a], self.nodes[a].box) for a in node.ancestors + (node.node_id,)]
        for child in children:
            child.priority = self.scorer.priority(ancestor_evidence(child.box, guides), child.best_score)
            self.trace.update(child.node_id, priority=child.priority)
        self.frontier.push(children)
        return True

    def _locate(self, nodes: list[Node]) -> None:
        """One batched ``locate`` call for ``nodes``; stores each node's detection."""
        for node, det in zip(nodes, self._located([n.box for n in nodes])):
            node.detection = det

    def _located(self, regions: list[Box]) -> list[Detection]:
        """One batched, budgeted ``locate`` call, its answer checked (one detection per region,
        finite scores, a usable heatmap)."""
        dets = self.budget.timed(lambda: self.loc.locate(self.target, regions))
        self.budget.model_calls += 1
        self.budget.nodes_scored += len(regions)
        if len(dets) != len(regions):
            raise RuntimeError(f"localizer {getattr(self.loc, 'name', '?')!r}: locate returned {len(dets)} "
                               f"detections for {len(regions)} regions")
        for det in dets:
            _checked_heatmap(det.heatmap, self.loc, "locate")
            if not np.isfinite(det.scores).all():
                raise RuntimeError(f"localizer {getattr(self.loc, 'name', '?')!r}: locate returned non-finite scores")
        return dets

    def _new_node(self, tile: Box, box: Box, parent: Node | None, level: int = 0) -> Node:
        ancestors = () if parent is None else parent.ancestors + (parent.node_id,)
        node = Node(node_id=len(self.nodes), box=_floats(box), tile=_floats(tile), level=level,
                    parent=-1 if parent is None else parent.node_id, ancestors=ancestors,
                    leaf=is_leaf(tile, self.leaf_side))
        self.nodes.append(node)
        self.trace.add_node(node.node_id, node.box, node.level, node.parent, 0.0, node.leaf)
        return node

    def _answer(self) -> tuple[Box | None, float, list[tuple[Box, float]], bool]:
        """``(box, score, instances, fallback)``: see :mod:`search.result` for the rules."""
        candidates = self.checks.candidates() if self.checks is not None else self.unchecked
        if candidates:  # ``select: first`` holds one; ``best`` the comparison's candidates
            hit = max(candidates, key=lambda v: rank(v, self.hcfg.threshold))
            self.final_check = hit.probability if self.checks is not None else None
            return hit.box_xyxy, hit.score, [(hit.box_xyxy, hit.score)], False
        if self.checks is not None:
            return self._checked_fallback()
        best_score = self.best.best_score if self.best is not None else 0.0
        best_box = self.best.detection.best_box if self.best is not None and self.best.detection else None
        if self.cfg.multi_instance:
            instances = self.instances.instances()
            if instances:
                return instances[0][0], instances[0][1], instances, False
        if best_box is not None and best_score >= self.cfg.confidence_low:
            return best_box, best_score, [(best_box, best_score)], True
        return None, best_score, [], False

    def _checked_fallback(self) -> tuple[Box | None, float, list[tuple[Box, float]], bool]:
        """The fallback the hit check accepts among the visited nodes' boxes (no confident hit)."""
        assert self.checks is not None
        verdict = self.checks.fallback((tuple(b), float(s)) for n in self.visited if n.detection is not None
                                       for b, s in zip(n.detection.boxes_xyxy, n.detection.scores))
        if verdict is None:
            return None, self.best.best_score if self.best is not None else 0.0, [], False
        self.final_check = verdict.probability
        return verdict.box_xyxy, verdict.score, [(verdict.box_xyxy, verdict.score)], True

    def _result(self, stop: str) -> SearchResult:
        box, score, instances, fallback = self._answer()
        b, seconds = self.budget, self.budget.elapsed()
        calls = self.checks.calls + self.checks.unbudgeted_calls if self.checks is not None else 0
        final = -1.0 if self.final_check is None else float(self.final_check)
        self.trace.set_summary(
            target=self.target, strategy=self.cfg.strategy, found=box is not None,
            box_xyxy=list(box) if box is not None else [], score=float(score), nodes_visited=b.nodes_visited,
            model_calls=b.model_calls, seconds=seconds, stop_reason=stop, image_width=self.image.width,
            image_height=self.image.height, hit_check_calls=calls, hit_check_score=final)
        return SearchResult(self.target, self.cfg.strategy, box is not None, box, float(score), instances,
                            b.nodes_visited, b.nodes_scored, b.model_calls, seconds, b.localizer_seconds, stop,
                            self.trace, fallback, self.final_check, calls,
                            self.checks.seconds if self.checks is not None else 0.0,
                            self.checks.forwards if self.checks is not None else 0,
                            None if box is None else self.box_levels.get(_floats(box)))


def _floats(box: Box) -> Box:
    return tuple(float(v) for v in box)  # type: ignore[return-value]


def _checked_heatmap(heatmap: np.ndarray, loc: Localizer, call: str) -> np.ndarray:
    """``heatmap`` as a finite 2-D float32 array, or a RuntimeError naming the localizer."""
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2 or min(heat.shape) < 1 or not np.isfinite(heat).all():
        raise RuntimeError(f"localizer {getattr(loc, 'name', '?')!r}: {call} returned a heatmap of shape "
                           f"{heat.shape} (expected finite (h, w) logits)")
    return heat
