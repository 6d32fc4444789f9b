"""Configs of the token merger's training: the ``merger_train`` section and ``seal train merger``'s config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from eval.synth.config import SynthConfig
from seal.core.errors import ConfigError
from seal.vqa.merger_config import MergerConfig
from training.config import TrainConfig
from training.vqa_data import VIEWS, VQADataConfig
from vwm.layout import VWMConfig


@dataclass
class MergerTrainConfig:
    """The ``merger_train`` section: which frozen VQA model the merger learns to serve, its losses
    and where the trained merger is exported."""

    vqa_path: str = "checkpoints/vqa_tiny"
    """The frozen VQA model (a llava checkpoint; read only, never written)."""
    export_dir: str = "runs/merger_tiny/export"
    """Where the merger's weights, manifest (kind ``merger``) and training log are written."""
    tokens: list[int] = field(default_factory=lambda: [16, 32])
    """``M`` values trained on: each step draws one (uniformly), so one merger serves every listed
    count (its weights do not depend on ``M``)."""
    task_weight: float = 1.0
    """Weight of the VQA task loss (next-token cross-entropy on the reply, the VQA recipe's)."""
    sparsity_weight: float = 1e-2
    """Weight of the merge-sparsity loss (:func:`seal.vqa.merger.merge_sparsity_loss`)."""
    views: list[str] = field(default_factory=lambda: ["global", "crops"])
    """Examples trained on, by what they show (:data:`training.vqa_data.VIEWS`; ``none`` has no image
    and is never used)."""

    def __post_init__(self) -> None:
        if not self.vqa_path or not self.export_dir:
            raise ConfigError("merger_train.vqa_path / export_dir: expected directories, found an empty string")
        self.tokens = [int(t) for t in self.tokens]
        if not self.tokens or min(self.tokens) < 1:
            raise ConfigError(f"merger_train.tokens: expected one or more counts >= 1, found {self.tokens}")
        if self.task_weight < 0 or self.sparsity_weight < 0 or self.task_weight + self.sparsity_weight == 0:
            raise ConfigError(f"merger_train.task_weight / sparsity_weight: expected >= 0, not both 0, found "
                              f"{self.task_weight} / {self.sparsity_weight}")
        bad = [v for v in self.views if v not in VIEWS or v == "none"]
        if not self.views or bad:
            raise ConfigError(f"merger_train.views: expected a non-empty subset of global, crops; found {self.views}")


@dataclass
class TrainMergerConfig:
    """``seal train merger``: the scenes, their examples, the loop, the merger and its training."""

    OUT_DIR: ClassVar[str] = "train.out_dir"
    """The field naming the run's folder (its resolved config and run record go there)."""

    seed: int = 0
    """The run's seed: the merger's initialisation, each scene's example choices, the batch order,
    the Gumbel noise and the drawn ``M``."""
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(split="train"))
    """The scenes (never ``test``)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    vwm: VWMConfig = field(default_factory=VWMConfig)
    """The visual working memory layout of the examples (the VQA model's answering layout)."""
    data: VQADataConfig = field(default_factory=lambda: VQADataConfig(attribute_maps=False))
    """How scenes become examples (the VQA recipe's; the attribute maps are not used here)."""
    merger: MergerConfig = field(default_factory=MergerConfig)
    merger_train: MergerTrainConfig = field(default_factory=MergerTrainConfig)

    def __post_init__(self) -> None:
        if self.synth.split == "test":
            raise ConfigError("synth.split: the merger trains on 'train' or 'val' scenes, found 'test'")
        if self.data.attribute_maps:
            raise ConfigError("data.attribute_maps: the merger recipe does not read them; set false")
