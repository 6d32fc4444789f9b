"""Configs of the layer pruners' adversarial training (seed 002, phase 3): the ``pruner_train`` section
and ``seal train pruners``'s config.

The VQA model (``pruner_train.vqa_path``) stays frozen; the ``pruners`` heads learn which vision
positions to keep from the answer's cross-entropy (task) and from fooling a discriminator that tells
the last layers' hidden states of the pruned forward from the unpruned one's (adversarial); the
discriminator learns real / fake. Each part has its own optimizer (``training.loop.OptimGroup``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from eval.synth.config import SynthConfig
from seal.core.errors import ConfigError
from seal.vqa.pruners import PrunerConfig
from training.config import TrainConfig
from training.vqa_data import VQADataConfig
from vwm.layout import VWMConfig


@dataclass
class PrunerTrainConfig:
    """The ``pruner_train`` section: the frozen model, the losses, the optimizers' rates, the export."""

    vqa_path: str = "checkpoints/vqa_tiny"
    """The frozen VQA model (a LLaVA checkpoint) the pruners are trained for."""
    merger: str = ""
    """A trained token merger (``seal train merger``'s export) that joins the training: the images
    reach the LLM merged to ``merger_ratio`` of their tokens, then pruned, and the merger gets the
    third optimizer (task + adversarial + merge sparsity); empty = no merger, two optimizers."""
    merger_ratio: float = 0.5
    """With a merger: each image's merged tokens, as a share of its tower tokens."""
    merge_sparsity_weight: float = 1e-4
    """With a merger: weight of the merge-sparsity term in its loss (the seed's 1e-4)."""
    lr_merger: float = 2e-5
    """With a merger: peak learning rate of its optimizer (the seed's 2e-5)."""
    data: VQADataConfig = field(default_factory=VQADataConfig)
    """How the ``synth`` scenes become (prompt, answer) examples (as the VQA model was trained)."""
    task_weight: float = 25.0
    """Weight of the answer's cross-entropy in the pruners' loss (the seed's 25)."""
    adv_weight: float = 1.0
    """Weight of the adversarial term (BCE of the discriminator calling the pruned states real)."""
    keep_budget_weight: float = 1.0
    """``pruners.train_mask: sigmoid`` only: weight of ``(mean keep probability - keep ratio)^2`` per
    pruning layer in the pruners' loss (the relaxed mask would otherwise keep everything)."""
    disc_layers: list[int] = field(default_factory=lambda: [-1, -2])
    """LLM layers (negative: from the last) whose hidden states the discriminator reads, mean-pooled
    over the text positions (prompt text and answer)."""
    disc_hidden: int = 128
    """Hidden width of the discriminator's MLP."""
    lr_pruners: float = 2e-4
    """Peak learning rate of the pruners' optimizer."""
    lr_discriminator: float = 5e-4
    """Peak learning rate of the discriminator's optimizer."""
    export_dir: str = "runs/pruners_tiny/export"
    """Where the trained heads (``pruners.safetensors``, ``pruners.json``), log and summary go."""

    def __post_init__(self) -> None:
        for name in ("task_weight", "adv_weight", "keep_budget_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"pruner_train.{name}: expected a finite value >= 0, found {value}")
        for name in ("lr_pruners", "lr_discriminator", "lr_merger"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"pruner_train.{name}: expected > 0, found {getattr(self, name)}")
        self.disc_layers = [int(v) for v in self.disc_layers]
        if not self.disc_layers or len(set(self.disc_layers)) != len(self.disc_layers):
            raise ConfigError(f"pruner_train.disc_layers: expected distinct layer indices, found {self.disc_layers}")
        if self.disc_hidden < 1:
            raise ConfigError(f"pruner_train.disc_hidden: expected >= 1, found {self.disc_hidden}")
        if not self.vqa_path:
            raise ConfigError("pruner_train.vqa_path: expected the VQA model's directory, found an empty string")
        if not 0.0 < self.merger_ratio <= 1.0:
            raise ConfigError(f"pruner_train.merger_ratio: expected 0 < ratio <= 1, found {self.merger_ratio}")
        if not (math.isfinite(self.merge_sparsity_weight) and self.merge_sparsity_weight >= 0):
            raise ConfigError(f"pruner_train.merge_sparsity_weight: expected a finite value >= 0, found "
                              f"{self.merge_sparsity_weight}")
        if not self.export_dir:
            raise ConfigError("pruner_train.export_dir: expected a directory, found an empty string")


@dataclass
class TrainPrunersConfig:
    """``seal train pruners``: the scenes, their layout, the heads, their training and the loop."""

    OUT_DIR: ClassVar[str] = "train.out_dir"
    """The field naming the run's folder (its resolved config and run record go there)."""

    seed: int = 0
    """The run's seed: the heads' initialisation, each scene's example choices, the batch order, the
    Gumbel noise."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    """The training scenes (never the ``test`` split)."""
    vwm: VWMConfig = field(default_factory=VWMConfig)
    """The layout of the examples when the VQA model's manifest records none (else its own)."""
    pruners: PrunerConfig = field(default_factory=PrunerConfig)
    pruner_train: PrunerTrainConfig = field(default_factory=PrunerTrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    """The loop (``lr`` unused: each optimizer has its own in ``pruner_train``)."""
