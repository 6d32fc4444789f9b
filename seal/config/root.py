"""The root ``Config``: one typed section per concern, filled by :func:`seal.config.load`."""

from __future__ import annotations

from dataclasses import dataclass, field

from eval.synth.config import SynthConfig
from search.config import SearchConfig
from search.oracle_config import OracleConfig
from seal.agent.config import AgentConfig, ModelsConfig
from seal.core.image_io import ImageConfig
from training.config import TrainConfig
from training.crop_check_recipe import CropCheckTrainConfig
from training.policy_data import PolicyDataConfig
from training.vqa_recipe import VQATrainConfig
from training.vsm_recipe import VSMTrainConfig
from seal.policy.config import PolicyConfig
from search.hit_check.config import HitCheckConfig
from vwm.budget import VisionBudgetConfig
from vwm.layout import VWMConfig


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
    models: ModelsConfig = field(default_factory=ModelsConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    hit_check: HitCheckConfig = field(default_factory=HitCheckConfig)
    policy_data: PolicyDataConfig = field(default_factory=PolicyDataConfig)
