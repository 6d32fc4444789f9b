"""``SynthConfig``: how SynthVStar scenes and questions are generated.

Sizes are fractions of the image's long side unless a field says otherwise. An object's *size* is
its nominal extent: the long side of its unrotated bounding box (rotation changes the drawn box by
at most ~30%). Ranges are ``[low, high]`` lists sampled uniformly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seal.core.errors import ConfigError


@dataclass
class SynthConfig:
    n: int = 20
    """Number of questions (samples) to write."""
    seed: int = 0
    """Base seed (>= 0). Sample ``i`` of split ``s`` draws from ``SeedSequence([seed, tag, s, i])``."""
    split: Literal["train", "val", "test"] = "test"
    """Splits draw from disjoint random streams, so they never overlap."""
    suite: Literal["vstar", "mixed"] = "vstar"
    """``vstar``: small-target attribute + spatial questions (``tag`` "search"). ``mixed``: a third each
    of "text" (answer stated in the question), "coarse" (large target) and "search" questions."""

    long_side: int = 2400
    """Median long side of the generated images, pixels (up to 8192)."""
    long_side_jitter: float = 0.25
    """Each image's long side is ``long_side * U(1 - jitter, 1 + jitter)`` (clamped to 256..8192)."""
    aspect_ratios: list[float] = field(default_factory=lambda: [1.0, 4 / 3, 3 / 2, 16 / 9])
    """Long/short side ratios of ordinary images; each image picks one uniformly."""
    portrait_prob: float = 0.25
    """Probability that an ordinary (non-panorama) image is taller than wide."""
    panorama_prob: float = 0.08
    """Probability of a wide panorama (aspect drawn from ``panorama_aspect``; never for coarse questions)."""
    panorama_aspect: list[float] = field(default_factory=lambda: [2.4, 3.5])
    """Width/height range of panoramas."""

    min_objects: int = 25
    max_objects: int = 60
    """Objects per scene (targets, near misses and distractors), drawn uniformly in this range."""
    target_size: list[float] = field(default_factory=lambda: [0.013, 0.024])
    """Size range of small (searched) targets: ~31-58 px on a 2400 px image, unreadable at 336 px."""
    distractor_size: list[float] = field(default_factory=lambda: [0.011, 0.032])
    """Size range of ordinary distractors and near misses (overlaps the target range on purpose)."""
    large_objects: int = 2
    """At most this many large distractors per scene (0..large_objects, uniformly)."""
    large_size: list[float] = field(default_factory=lambda: [0.06, 0.13])
    """Size range of large distractors."""
    coarse_size: list[float] = field(default_factory=lambda: [0.17, 0.27])
    """Size range of the target of a "coarse" question (drawn box >= 15% of the long side)."""
    near_misses: int = 4
    """Near misses per target: objects that differ from the target's name in exactly one attribute."""

    spatial_fraction: float = 76 / 191
    """Fraction of spatial (left/right) questions; V*Bench has 76 of 191. Exact within one sample for
    every prefix of the benchmark, and sample 0 is always an attribute question."""
    color_fraction: float = 0.5
    """Fraction of attribute questions that ask the colour (the rest ask the pattern)."""
    min_spatial_gap: float = 0.12
    """Horizontal gap between the two objects of a spatial question, fraction of the image width."""

    clutter_blobs: int = 60
    """Muted background blobs per image (scaled by area relative to a 2400x1800 image)."""
    clutter_lines: int = 40
    """Muted background lines per image (scaled like ``clutter_blobs``)."""
    jpeg_quality: int = 90
    """JPEG quality of the written images."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"synth.n: expected >= 1, found {self.n}")
        if self.seed < 0:
            raise ConfigError(f"synth.seed: expected >= 0, found {self.seed}")
        if not 256 <= self.long_side <= 8192:
            raise ConfigError(f"synth.long_side: expected 256..8192, found {self.long_side}")
        _check_fraction("long_side_jitter", self.long_side_jitter, 0.0, 0.5)
        if not self.aspect_ratios or any(not 1.0 <= a <= 4.0 for a in self.aspect_ratios):
            raise ConfigError(f"synth.aspect_ratios: expected a non-empty list of values in 1..4, found "
                              f"{self.aspect_ratios}")
        _check_fraction("portrait_prob", self.portrait_prob, 0.0, 1.0)
        _check_fraction("panorama_prob", self.panorama_prob, 0.0, 1.0)
        _check_range("panorama_aspect", self.panorama_aspect, 1.0, 6.0)
        if not 2 <= self.min_objects <= self.max_objects <= 400:
            raise ConfigError("synth.min_objects / max_objects: need 2 <= min <= max <= 400, found "
                              f"{self.min_objects} / {self.max_objects}")
        _check_range("target_size", self.target_size, 0.002, 0.1)
        _check_range("distractor_size", self.distractor_size, 0.002, 0.1)
        _check_range("large_size", self.large_size, 0.02, 0.3)
        _check_range("coarse_size", self.coarse_size, 0.16, 0.35)
        if not 0 <= self.large_objects <= 10:
            raise ConfigError(f"synth.large_objects: expected 0..10, found {self.large_objects}")
        if not 1 <= self.near_misses <= 12:
            raise ConfigError(f"synth.near_misses: expected 1..12, found {self.near_misses}")
        _check_fraction("spatial_fraction", self.spatial_fraction, 0.0, 0.9)
        _check_fraction("color_fraction", self.color_fraction, 0.0, 1.0)
        _check_fraction("min_spatial_gap", self.min_spatial_gap, 0.0, 0.5)
        if self.clutter_blobs < 0 or self.clutter_lines < 0:
            raise ConfigError("synth.clutter_blobs / clutter_lines: expected >= 0, found "
                              f"{self.clutter_blobs} / {self.clutter_lines}")
        if not 50 <= self.jpeg_quality <= 100:
            raise ConfigError(f"synth.jpeg_quality: expected 50..100, found {self.jpeg_quality}")


def _check_fraction(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"synth.{name}: expected {low}..{high}, found {value}")


def _check_range(name: str, value: list[float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ConfigError(f"synth.{name}: expected [low, high] with {low} <= low <= high <= {high}, "
                          f"found {value}")


@dataclass
class BenchSynthConfig:
    """``seal bench synth``: the generator's one section."""

    synth: SynthConfig = field(default_factory=SynthConfig)
