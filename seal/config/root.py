"""The root ``Config``: one typed section per concern, filled by :func:`seal.config.load`."""

from __future__ import annotations

from dataclasses import dataclass, field

from eval.synth.config import SynthConfig
from search.config import SearchConfig
from search.oracle_config import OracleConfig
from seal.agent.config import AgentConfig
from seal.errors import ConfigError
from seal.image_io import DEFAULT_MAX_PIXELS
from training.config import TrainConfig
from training.crop_check_recipe import CropCheckTrainConfig
from training.policy_data import PolicyDataConfig
from training.vqa_recipe import VQATrainConfig
from training.vsm_recipe import VSMTrainConfig
from seal.policy.config import PolicyConfig
from seal.vqa.verifier import VerifierConfig
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
    train: TrainConfig = field(default_factory=TrainConfig)
    vqa_train: VQATrainConfig = field(default_factory=VQATrainConfig)
    vsm_train: VSMTrainConfig = field(default_factory=VSMTrainConfig)
    crop_check_train: CropCheckTrainConfig = field(default_factory=CropCheckTrainConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    policy_data: PolicyDataConfig = field(default_factory=PolicyDataConfig)
