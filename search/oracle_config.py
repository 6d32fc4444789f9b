"""``OracleConfig``: how the ground-truth oracle localizer simulates a real one."""

from __future__ import annotations

from dataclasses import dataclass

from seal.core.errors import ConfigError


@dataclass
class OracleConfig:
    input_size: int = 224
    """Side of the simulated localizer's square input; a region is seen at this resolution."""
    min_legible_px: float = 14.0
    """A target is detectable only if its shorter side spans at least this many input pixels."""
    min_visible_fraction: float = 0.6
    """...and at least this fraction of its box lies inside the region."""
    heatmap_size: int = 32
    """Side of the heatmap grid returned per region."""
    detect_score: float = 0.9
    """Mean score of a true detection (noise is added, then clipped to [0, 1])."""
    score_noise: float = 0.05
    cue_gain: float = 8.0
    """Peak logit of the blurred target cue when the target is in the region but illegible."""
    cue_blur: float = 0.15
    """Gaussian sigma of the blurred cue, as a fraction of the region's long side."""
    heatmap_noise: float = 0.5
    """Std of Gaussian noise added to heatmap logits."""
    false_positive_rate: float = 0.05
    """Probability that a region without a legible target still yields a spurious detection."""
    false_positive_max_score: float = 0.45
    """Spurious detections score uniformly in [0.05, this] (may cross confidence_low, not high)."""
    distractor_cue: float = 0.3
    """Cue strength given to same-category distractor boxes (near misses), relative to the target."""
    context_accuracy: float = 0.8
    """Probability that a contextual-cue request points at the right place (else a wrong place)."""

    def __post_init__(self) -> None:
        if self.input_size < 8 or self.heatmap_size < 2:
            raise ConfigError("oracle.input_size must be >= 8 and oracle.heatmap_size >= 2")
        for name in ("false_positive_rate", "context_accuracy", "min_visible_fraction", "detect_score"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"oracle.{name}: expected a probability in [0, 1], found {v}")
