"""Precomputed policy-training data: one ``.npz`` per split (``seal train policy`` collects it by
running the agent under every forced action, :mod:`training.policy_data`).

Arrays (N questions; action columns are (NO_VISION, COARSE_VISION, FULL_VISION)):

==============  ==========  =======  ==========================================================
key             shape       dtype    meaning
==============  ==========  =======  ==========================================================
features        (N, D+2)    float32  :func:`seal.policy.features.build_features` of the text pass
                                     in :data:`FEATURE_MODE` of the :data:`HIDDEN_SOURCE` state
task_loss       (N, 3)      float32  the VQA model's loss under each action (e.g. option NLL or
                                     0/1 error); NaN = the action was not run
correct         (N, 3)      bool     the answer under each action was right
costs           (N, 3)|(3,) float32  measured vision tokens of each action (NO column = 0);
                                     NaN = not run
entropy         (N,)        float32  optional: text-pass entropy, nats (needed by thresholds)
margin          (N,)        float32  optional: text-pass top-1 minus top-2 probability
ids             (N,)        str      optional: question ids
coarse_margin   (N,)        float32  optional: top-1 minus top-2 option score of the COARSE answer
                                     (NaN = free-form); needed by the COARSE -> FULL escalation
==============  ==========  =======  ==========================================================

A binary policy only reads the NO and FULL columns, so COARSE may be all NaN for it. A head of
another feature mode reads its subset of the columns (:meth:`PolicyData.features_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from seal.core.errors import InputError
from seal.policy.actions import N_ACTIONS, Action

FEATURE_MODE = "hidden_entropy_margin"
HIDDEN_SOURCE = "pooled"
"""The features policy data holds, and a decision under a fixed baseline records: the pooled
hidden state (D) with the normalised entropy and the margin appended."""

REQUIRED = ("features", "task_loss", "correct", "costs")
OPTIONAL = ("entropy", "margin", "ids", "coarse_margin")


@dataclass
class PolicyData:
    features: np.ndarray
    task_loss: np.ndarray
    correct: np.ndarray
    costs: np.ndarray
    """(N, 3) after construction (a (3,) input is broadcast)."""
    entropy: np.ndarray | None = None
    margin: np.ndarray | None = None
    ids: np.ndarray | None = None
    coarse_margin: np.ndarray | None = None
    source: str | None = None
    """File the data came from (named in errors)."""

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.task_loss = np.asarray(self.task_loss, dtype=np.float32)
        self.correct = np.asarray(self.correct).astype(bool)
        costs = np.asarray(self.costs, dtype=np.float32)
        if self.features.ndim != 2:
            self._fail(f"features: expected (N, F), found shape {self.features.shape}")
        n = self.features.shape[0]
        if n == 0:
            self._fail("no questions (N = 0)")
        if costs.shape == (N_ACTIONS,):
            costs = np.broadcast_to(costs, (n, N_ACTIONS)).copy()
        self.costs = costs
        for key in ("task_loss", "correct", "costs"):
            if getattr(self, key).shape != (n, N_ACTIONS):
                self._fail(f"{key}: expected shape ({n}, 3) [no, coarse, full], found {getattr(self, key).shape}")
        for key in OPTIONAL:
            value = getattr(self, key)
            if value is None:
                continue
            value = np.asarray(value) if key == "ids" else np.asarray(value, dtype=np.float32)
            if value.shape != (n,):
                self._fail(f"{key}: expected shape ({n},), found {value.shape}")
            setattr(self, key, value)
        if not np.all(np.isfinite(self.features)):
            self._fail("features: contains NaN or inf")
        if np.any(self.costs[:, Action.NO_VISION] != 0):
            self._fail("costs: the NO_VISION column must be 0")
        if np.any(self.costs[np.isfinite(self.costs)] < 0):
            self._fail("costs: vision-token counts must be >= 0")

    def __len__(self) -> int:
        return self.features.shape[0]

    def features_for(self, feature_mode: str) -> np.ndarray:
        """(N, F) the columns of ``features`` a head of ``feature_mode`` reads (the hidden state, then
        the entropy and / or the margin it appends; :mod:`seal.policy.features`)."""
        d = self.features.shape[1] - 2
        extras = {"hidden": [], "hidden_entropy": [d], "hidden_margin": [d + 1], "hidden_entropy_margin": [d, d + 1]}
        if feature_mode not in extras:
            raise ValueError(f"feature_mode: expected one of {list(extras)}, found {feature_mode!r}")
        if feature_mode == FEATURE_MODE:
            return self.features  # all of them (the same array: bit-identical statistics)
        return self.features[:, list(range(d)) + extras[feature_mode]]

    def require_actions(self, actions: Sequence[Action]) -> None:
        """Raise unless task_loss and costs are finite in every column of ``actions``."""
        cols = [int(a) for a in actions]
        for key in ("task_loss", "costs"):
            bad = ~np.isfinite(getattr(self, key)[:, cols])
            if bad.any():
                row, col = map(int, np.argwhere(bad)[0])
                self._fail(f"{key}: NaN/inf for action {Action(cols[col]).name} (row {row}); "
                           f"that action must have been run for every question")

    def require_signals(self) -> None:
        """Raise unless the optional entropy and margin arrays are present."""
        if self.entropy is None or self.margin is None:
            self._fail("entropy and margin arrays are required (an uncertainty-threshold target or fallback)")

    def _fail(self, message: str) -> None:
        raise InputError(message, self.source)


def save_policy_data(path: str | Path, data: PolicyData) -> Path:
    """Write ``data`` as a compressed ``.npz`` (the keys of the module table)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: getattr(data, k) for k in REQUIRED}
    arrays.update({k: getattr(data, k) for k in OPTIONAL if getattr(data, k) is not None})
    if arrays.get("ids") is not None:
        arrays["ids"] = np.asarray(arrays["ids"], dtype=str)
    with out.open("wb") as f:
        np.savez_compressed(f, **arrays)
    return out


def load_policy_data(path: str | Path) -> PolicyData:
    """Read and validate a ``.npz`` written by :func:`save_policy_data` (or the pipeline)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("policy data file not found", p)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise InputError(f"not a readable .npz file ({exc})", p) from None
    missing = [k for k in REQUIRED if k not in arrays]
    unknown = sorted(set(arrays) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise InputError(f"expected arrays {list(REQUIRED)} (+ optional {list(OPTIONAL)}), "
                         f"missing {missing}, unexpected {unknown}", p)
    return PolicyData(**arrays, source=str(p))
