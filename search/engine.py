"""The V* search loop: iterative best-first search over one global frontier of image patches.

Read top to bottom: locate the target in the root; then repeatedly pop a node, stop on a
confident detection, otherwise pick the heatmap that guides its children (the target heatmap, or a
contextual cue when that is weak), split the node, score all children in one batched ``locate``
call and push them with priorities from the ancestors' evidence. Budgets end the loop without
raising; the anytime fallback returns the best box seen. The loop talks only to the ``Localizer``
protocol: no torch model is imported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from search.budget import Budget
from search.config import SearchConfig
from search.frontier import make_frontier
from search.geometry import iou_xyxy
from search.image_source import ImageSource
from search.localizer import Detection, Localizer
from search.priority import get_scorer, heatmap_evidence
from search.result import SearchResult
from search.trace import SearchTrace
from search.tree import Node, is_leaf, leaf_side, split_box


@dataclass
class StepEvent:
    """One visited node, reported as it happens."""

    visit_order: int
    node_id: int
    box_xyxy: tuple
    level: int
    priority: float
    best_score: float
    best_box_xyxy: tuple | None
    cue: str
    heatmap_max: float
    queue_size: int


def run_search(localizer: Localizer, image: ImageSource, target: str, cfg: SearchConfig,
               on_step: Callable[[StepEvent], None] | None = None, set_image: bool = True) -> SearchResult:
    """Search ``image`` for ``target``. Never raises on a budget; see :class:`SearchResult`."""
    if set_image:
        localizer.set_image(image)
    return _Search(localizer, image, target, cfg, on_step).run()


class _Search:
    def __init__(self, localizer: Localizer, image: ImageSource, target: str, cfg: SearchConfig,
                 on_step: Callable[[StepEvent], None] | None) -> None:
        self.loc, self.image, self.target, self.cfg, self.on_step = localizer, image, target, cfg, on_step
        self.budget = Budget(cfg)
        self.trace = SearchTrace()
        self.frontier = make_frontier(cfg.strategy, cfg.seed)
        self.scorer = get_scorer(cfg.priority_scorer)
        self.leaf = leaf_side(image.width, image.height, cfg)
        self.detections: dict[int, Detection] = {}
        self.next_id = 0
        self.best: tuple[float, tuple | None] = (0.0, None)
        self.instances: list[tuple[tuple, float]] = []
        self.call_limited = False

    def run(self) -> SearchResult:
        root = self._new_node(self.image.full_box(), level=0, parent=-1, evidence=[], priority=1.0)
        self._locate([root])
        self.frontier.push_children([root])
        stop = "exhausted"
        while True:
            reason = self.budget.exhausted()
            if reason:
                stop = reason
                break
            if not len(self.frontier):
                stop = "max_model_calls" if self.call_limited else "exhausted"
                break
            node = self.frontier.pop()
            if node.parent >= 0 and node.priority < self.cfg.min_priority:
                continue
            hit = self._visit(node)
            if hit and not self.cfg.multi_instance:
                stop = "confident"
                break
            if self.cfg.multi_instance and len(self.instances) >= self.cfg.max_instances:
                stop = "instances_cap"
                break
        return self._result(stop)

    def _visit(self, node: Node) -> bool:
        t0 = time.perf_counter()
        calls_before = self.budget.model_calls
        self.budget.nodes_visited += 1
        det = self.detections[node.node_id]
        if det.best_score > self.best[0]:
            self.best = (det.best_score, det.best_box)
        hit = det.best_score > self.cfg.confidence_high
        if hit and self.cfg.multi_instance:
            self._add_instance(det)
        leaf = is_leaf(node.box, self.leaf)
        heat, cue = det.heatmap, "target"
        expand = not leaf and not (hit and not self.cfg.multi_instance)
        if expand and self.cfg.context_cue and float(heat.max()) <= self.cfg.cue_threshold(node.level):
            if self.budget.can_call():
                context = self._timed(lambda: self.loc.suggest_region(self.target, node.box))
                self.budget.model_calls += 1
                if context is not None:
                    heat, cue = np.asarray(context, dtype=np.float32), "context"
        self.trace.heatmaps[node.node_id] = heat
        if expand:
            self._expand(node, heat)
        self.trace.update(node.node_id, visit_order=self.budget.nodes_visited, best_score=det.best_score,
                          best_box_xyxy=list(det.best_box or []), cue=cue, heatmap_max=float(heat.max()),
                          model_calls=self.budget.model_calls - calls_before, seconds=time.perf_counter() - t0)
        if self.on_step is not None:
            self.on_step(StepEvent(self.budget.nodes_visited, node.node_id, node.box, node.level, node.priority,
                                   det.best_score, det.best_box, cue, float(heat.max()), len(self.frontier)))
        return hit

    def _expand(self, node: Node, heat: np.ndarray) -> None:
        if not self.budget.can_call():
            self.call_limited = True
            return
        children = []
        for box in split_box(node.box, self.cfg):
            evidence = node.evidence + [heatmap_evidence(heat, node.box, box)]
            children.append(self._new_node(box, node.level + 1, node.node_id, evidence, 0.0))
        dets = self._locate(children)
        for child, det in zip(children, dets):
            child.priority = self.scorer(child.evidence, self.cfg) + self.cfg.detection_priority_weight * det.best_score
            self.trace.update(child.node_id, priority=child.priority)
        self.frontier.push_children(children)

    def _locate(self, nodes: list[Node]) -> list[Detection]:
        dets = self._timed(lambda: self.loc.locate(self.target, [n.box for n in nodes]))
        if len(dets) != len(nodes):
            raise RuntimeError(f"localizer {getattr(self.loc, 'name', '?')} returned {len(dets)} detections "
                               f"for {len(nodes)} regions")
        self.budget.model_calls += 1
        self.budget.nodes_scored += len(nodes)
        for n, d in zip(nodes, dets):
            self.detections[n.node_id] = d
            n.detection_score, n.located = d.best_score, True
        return dets

    def _timed(self, fn):
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.budget.localizer_seconds += time.perf_counter() - t0

    def _new_node(self, box, level: int, parent: int, evidence: list[float], priority: float) -> Node:
        node = Node(self.next_id, tuple(float(v) for v in box), level, parent, priority, evidence)
        self.trace.add_node(node.node_id, node.box, level, parent, priority, is_leaf(node.box, self.leaf))
        self.next_id += 1
        return node

    def _add_instance(self, det: Detection) -> None:
        for box, score in zip(det.boxes_xyxy, det.scores):
            if score <= self.cfg.confidence_high:
                break
            b = tuple(float(v) for v in box)
            dup = [i for i, (kb, _) in enumerate(self.instances) if iou_xyxy(b, kb) > self.cfg.nms_iou]
            if not dup:
                self.instances.append((b, float(score)))
            elif score > self.instances[dup[0]][1]:
                self.instances[dup[0]] = (b, float(score))

    def _result(self, stop: str) -> SearchResult:
        cfg = self.cfg
        fallback = False
        if cfg.multi_instance and self.instances:
            self.instances.sort(key=lambda x: -x[1])
            found, (box, score) = True, self.instances[0]
        elif stop == "confident":
            found, (score, box) = True, self.best
        elif self.best[1] is not None and self.best[0] >= cfg.confidence_low:
            found, fallback, (score, box) = True, True, self.best
        else:
            found, box, score = False, None, self.best[0]
        instances = list(self.instances) if cfg.multi_instance else ([(box, score)] if found else [])
        seconds = self.budget.elapsed()
        self.trace.graph.graph.update(
            target=self.target, strategy=cfg.strategy, found=found, box_xyxy=list(box) if box else [],
            score=float(score), nodes_visited=self.budget.nodes_visited, model_calls=self.budget.model_calls,
            seconds=seconds, stop_reason=stop, image_width=self.image.width, image_height=self.image.height)
        return SearchResult(self.target, cfg.strategy, found, box, float(score), instances,
                            self.budget.nodes_visited, self.budget.nodes_scored, self.budget.model_calls, seconds,
                            self.budget.localizer_seconds, stop, self.trace, fallback)
