"""Expected calibration error (ECE) with equal-width confidence bins.

    ECE = sum_b (|B_b| / N) * | accuracy(B_b) - mean confidence(B_b) |

over ``n_bins`` bins of [0, 1]: bin ``b`` holds confidences in ``(b/n, (b+1)/n]``, the first bin
also holds 0. Used on the policy (confidence = p(chosen action), correct = that action's answer
was right) and on answers (confidence = p(chosen option)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ReliabilityBins:
    """Per-bin statistics, each (n_bins,): ``count``, ``confidence`` and ``accuracy`` (NaN when empty)."""

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def reliability_bins(confidence: Any, correct: Any, n_bins: int = 15) -> ReliabilityBins:
    """Bin ``confidence`` (N,) in [0, 1] and average it and ``correct`` (N,) bool/0-1 per bin."""
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    corr = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != corr.shape:
        raise ValueError(f"confidence and correct must have the same length, found {conf.shape} and {corr.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins: expected >= 1, found {n_bins}")
    if conf.size and (np.any(~np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidence: expected finite values in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)  # (lo, hi] bins
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(idx, weights=corr, minlength=n_bins) / count
    return ReliabilityBins(edges, count.astype(np.int64), mean_conf, mean_acc)


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 15) -> float:
    """ECE in [0, 1] (0 = calibrated); 0.0 for empty input."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = bins.count.sum()
    if total == 0:
        return 0.0
    full = bins.count > 0
    gaps = np.abs(bins.accuracy[full] - bins.confidence[full])
    return float((bins.count[full] / total * gaps).sum())
