"""``SynthConfig``: how SynthVStar scenes and questions are generated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seal.errors import ConfigError


@dataclass
class SynthConfig:
    n: int = 20
    """Number of questions (samples) to write."""
    seed: int = 0
    split: Literal["train", "val", "test"] = "test"
    """Splits draw from disjoint random streams, so they never overlap."""
    suite: Literal["vstar", "mixed"] = "vstar"
    long_side: int = 2400
    """Median long side of the generated images, pixels (up to 8192)."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"synth.n: expected >= 1, found {self.n}")
        if not 256 <= self.long_side <= 8192:
            raise ConfigError(f"synth.long_side: expected 256..8192, found {self.long_side}")
