"""Frontiers: the expansion order of each strategy over one global set of pending nodes.

``vstar`` pops the highest priority (ties: oldest first). The blind baselines of the V* paper's
search-length table ignore priorities: ``bfs`` / ``dfs`` in reading order, ``random-bfs`` /
``random-dfs`` with children shuffled by a seeded RNG.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from typing import Protocol

from search.tree import Node


class Frontier(Protocol):
    def push_children(self, children: list[Node]) -> None: ...
    def pop(self) -> Node: ...
    def __len__(self) -> int: ...


class PriorityFrontier:
    """Best-first: max priority, FIFO among equal priorities (creation order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Node]] = []

    def push_children(self, children: list[Node]) -> None:
        for n in children:
            heapq.heappush(self._heap, (-n.priority, n.node_id, n))

    def pop(self) -> Node:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


class BreadthFrontier:
    """Level order; children in reading order, or shuffled when ``rng`` is given."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._queue: deque[Node] = deque()
        self._rng = rng

    def push_children(self, children: list[Node]) -> None:
        kids = list(children)
        if self._rng is not None:
            self._rng.shuffle(kids)
        self._queue.extend(kids)

    def pop(self) -> Node:
        return self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)


class DepthFrontier:
    """Depth first; the first child (reading order, or random) is explored first."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._stack: list[Node] = []
        self._rng = rng

    def push_children(self, children: list[Node]) -> None:
        kids = list(children)
        if self._rng is not None:
            self._rng.shuffle(kids)
        self._stack.extend(reversed(kids))

    def pop(self) -> Node:
        return self._stack.pop()

    def __len__(self) -> int:
        return len(self._stack)


def make_frontier(strategy: str, seed: int = 0) -> Frontier:
    if strategy == "vstar":
        return PriorityFrontier()
    if strategy == "bfs":
        return BreadthFrontier()
    if strategy == "dfs":
        return DepthFrontier()
    if strategy == "random-bfs":
        return BreadthFrontier(random.Random(seed))
    if strategy == "random-dfs":
        return DepthFrontier(random.Random(seed))
    raise ValueError(f"unknown search strategy {strategy!r}")
