"""Policy inputs from the text-only pass: the feature vector and the raw uncertainty signals.

The feature vector of one question is the text-pass hidden state (``pooled`` or ``last``, per
``PolicyConfig.hidden_source``) with, per ``feature_mode``, the *normalised* uncertainty appended:

=========================  ===============================  ============
feature_mode               vector                           length
=========================  ===============================  ============
hidden                     [h]                              D
hidden_entropy             [h, H / log V]                   D + 1
hidden_margin              [h, m]                           D + 1
hidden_entropy_margin      [h, H / log V, m]                D + 2
=========================  ===============================  ============

``H`` is the next-token entropy in nats, ``V`` the vocabulary size (so ``H / log V`` is in [0, 1])
and ``m`` the top-1 minus top-2 probability (already in [0, 1]). The head standardises every
feature with statistics fitted on its training data, so no further scaling happens here.
The pipeline that precomputes training data must call :func:`build_features` too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from seal.core.errors import InputError
from seal.policy.config import FeatureMode

_EXTRAS: dict[str, tuple[str, ...]] = {
    "hidden": (),
    "hidden_entropy": ("entropy",),
    "hidden_margin": ("margin",),
    "hidden_entropy_margin": ("entropy", "margin"),
}


class TextPass(Protocol):
    """What the policy reads from :class:`seal.vqa.model.TextPassOutput`."""

    pooled: Any  # (D,) tensor
    last_hidden: Any  # (D,) tensor
    next_token_logits: Any  # (V,) tensor
    entropy: float
    margin: float


@dataclass
class PolicyInputs:
    """A batch of policy inputs.

    Attributes:
        features: (N, F) float32, rows built by :func:`build_features`.
        entropy: (N,) float64 next-token entropy of the text pass, nats (raw, for thresholds).
        margin: (N,) float64 top-1 minus top-2 next-token probability, in [0, 1].
    """

    features: np.ndarray
    entropy: np.ndarray
    margin: np.ndarray

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.entropy = np.asarray(self.entropy, dtype=np.float64).reshape(-1)
        self.margin = np.asarray(self.margin, dtype=np.float64).reshape(-1)
        if self.features.ndim != 2:
            raise ValueError(f"features: expected (N, F), found shape {self.features.shape}")
        n = self.features.shape[0]
        if self.entropy.shape != (n,) or self.margin.shape != (n,):
            raise ValueError(f"entropy/margin: expected ({n},) each, found {self.entropy.shape} / {self.margin.shape}")

    def __len__(self) -> int:
        return self.features.shape[0]

    def row(self, i: int) -> "PolicyInputs":
        return PolicyInputs(self.features[i:i + 1], self.entropy[i:i + 1], self.margin[i:i + 1])

    @classmethod
    def from_text_pass(cls, text_pass: TextPass, feature_mode: FeatureMode,
                       hidden_source: str = "pooled") -> "PolicyInputs":
        """The batch of one built from a text pass."""
        feats = build_features(text_pass, feature_mode, hidden_source)
        return cls(feats[None, :], [float(text_pass.entropy)], [float(text_pass.margin)])


def feature_dim(hidden_size: int, feature_mode: FeatureMode) -> int:
    """Length of the feature vector for an LLM of hidden size ``hidden_size`` (``D``)."""
    return hidden_size + len(_extras(feature_mode))


def build_features(text_pass: TextPass, feature_mode: FeatureMode, hidden_source: str = "pooled") -> np.ndarray:
    """The policy feature vector of one question, (F,) float32 (see the module table)."""
    if hidden_source not in ("pooled", "last"):
        raise ValueError(f"hidden_source: expected 'pooled' or 'last', found {hidden_source!r}")
    hidden = _to_numpy(text_pass.pooled if hidden_source == "pooled" else text_pass.last_hidden).reshape(-1)
    vocab = int(np.prod(np.shape(text_pass.next_token_logits)))
    extras = [_signal(text_pass, name, vocab) for name in _extras(feature_mode)]
    out = np.concatenate([hidden, np.asarray(extras, dtype=np.float32)]).astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError("text pass gave non-finite policy features (NaN/inf in hidden state, entropy or margin)")
    return out


def normalized_entropy(entropy: float, vocab_size: int) -> float:
    """Entropy in nats divided by its maximum ``log V``: in [0, 1]."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size: expected >= 2, found {vocab_size}")
    return float(entropy) / math.log(vocab_size)


def _signal(text_pass: TextPass, name: str, vocab: int) -> float:
    if name == "entropy":
        return normalized_entropy(text_pass.entropy, vocab)
    return float(text_pass.margin)


def _extras(feature_mode: str) -> tuple[str, ...]:
    if feature_mode not in _EXTRAS:
        raise ValueError(f"feature_mode: expected one of {list(_EXTRAS)}, found {feature_mode!r}")
    return _EXTRAS[feature_mode]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, any device / dtype
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)
