"""Frontiers: the expansion order of each strategy over one global set of pending nodes.

A frontier holds nodes that have been located but not visited yet. The engine pushes the children
of each expanded node (in reading order, row-major) and pops the next node to visit.

- ``vstar``: best-first over the whole tree: the highest priority anywhere; equal priorities pop
  in creation order (FIFO by node id), so ties are deterministic. Priorities are compared rounded
  to :data:`PRIORITY_DECIMALS` decimals, so float noise (e.g. two area-weighted means of the same
  flat heatmap) does not break a tie.
- ``bfs`` / ``dfs``: the blind "sequential" baselines of the V* paper's search-length table:
  level order, or depth first, children in reading order. Priorities are ignored.
- ``random-bfs`` / ``random-dfs``: the same, with each node's children shuffled by a
  ``random.Random(seed)``: the same seed gives the same order.

Frontiers are registered by strategy name in :data:`FRONTIERS`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from typing import Callable, Protocol, Sequence

from search.tree import Node
from seal.core.errors import ConfigError

PRIORITY_DECIMALS = 9


class Frontier(Protocol):
    def push(self, nodes: Sequence[Node]) -> None:
        """Add siblings, given in reading order."""

    def pop(self) -> Node:
        """Remove and return the next node to visit."""

    def __len__(self) -> int: ...


class PriorityFrontier:
    """Max priority first; ties by creation order (smaller ``node_id`` first)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Node]] = []

    def push(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            heapq.heappush(self._heap, (-round(node.priority, PRIORITY_DECIMALS), node.node_id, node))

    def pop(self) -> Node:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


class BreadthFrontier:
    """FIFO: level order. Children in reading order, or shuffled when ``rng`` is given."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._queue: deque[Node] = deque()
        self._rng = rng

    def push(self, nodes: Sequence[Node]) -> None:
        self._queue.extend(_ordered(nodes, self._rng))

    def pop(self) -> Node:
        return self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)


class DepthFrontier:
    """LIFO: depth first, the first child (reading order, or shuffled with ``rng``) explored first."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._stack: list[Node] = []
        self._rng = rng

    def push(self, nodes: Sequence[Node]) -> None:
        self._stack.extend(reversed(_ordered(nodes, self._rng)))

    def pop(self) -> Node:
        return self._stack.pop()

    def __len__(self) -> int:
        return len(self._stack)


def _ordered(nodes: Sequence[Node], rng: random.Random | None) -> list[Node]:
    out = list(nodes)
    if rng is not None:
        rng.shuffle(out)
    return out


FRONTIERS: dict[str, Callable[[int], Frontier]] = {
    "vstar": lambda seed: PriorityFrontier(),
    "bfs": lambda seed: BreadthFrontier(),
    "dfs": lambda seed: DepthFrontier(),
    "random-bfs": lambda seed: BreadthFrontier(random.Random(seed)),
    "random-dfs": lambda seed: DepthFrontier(random.Random(seed)),
}
"""Strategy name -> factory ``(seed) -> Frontier``."""


def make_frontier(strategy: str, seed: int = 0) -> Frontier:
    try:
        factory = FRONTIERS[strategy]
    except KeyError:
        raise ConfigError(f"search.strategy: expected one of {list(FRONTIERS)}, found {strategy!r}") from None
    return factory(seed)
