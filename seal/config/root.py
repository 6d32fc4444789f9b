"""The root ``Config``: one typed section per concern, filled by :func:`seal.config.load`."""

from __future__ import annotations

from dataclasses import dataclass, field

from eval.synth.config import SynthConfig
from search.config import SearchConfig
from search.oracle_config import OracleConfig
from seal.errors import ConfigError
from seal.image_io import DEFAULT_MAX_PIXELS
from seal.policy.config import PolicyConfig
from vwm.budget import VisionBudgetConfig
from vwm.layout import VWMConfig


@dataclass
class ImageConfig:
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Refuse images with more pixels than this (decompression-bomb guard)."""

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ConfigError(f"image.max_pixels: expected >= 1, found {self.max_pixels}")


@dataclass
class Config:
    image: ImageConfig = field(default_factory=ImageConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    vision_budget: VisionBudgetConfig = field(default_factory=VisionBudgetConfig)
    vwm: VWMConfig = field(default_factory=VWMConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
