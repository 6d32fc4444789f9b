"""Configs of the value-of-vision head's training: ``policy_train``, ``policy_data`` and ``seal train
policy``'s config.

``seal train policy`` first collects its data by running the agent (so its config holds every
section the agent reads, :class:`seal.agent.config.AskConfig`'s) under each forced action on
generated SynthVStar train questions (``synth``), then trains the head (``head``: its model
settings) with the one loop (``train``) on the objective of ``policy_train``. The ``policy``
section's escalation rule is replayed in training, and its ``baseline_*`` fields define a stage-1
target that is a baseline's action.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from eval.synth.config import SynthConfig
from seal.agent.config import AskConfig
from seal.core.errors import ConfigError
from seal.policy.config import HeadConfig
from training.config import TrainConfig

Stage1Target = Literal["always_full", "always_coarse", "no_vision", "uncertainty_threshold", "oracle"]


@dataclass
class PolicyTrainConfig:
    """The ``policy_train`` section: the head's two-stage objective and where the head is exported."""

    lambda_cost: float = 0.05
    """Weight of the expected normalised vision cost (the accuracy/cost trade-off; sweep for Pareto)."""
    lambda_cal: float = 0.0
    """Weight of the calibration term: mean (p(chosen action) - chosen action answered right)^2."""
    use_straight_through: bool = True
    """Stage 2 weighs task losses by a Gumbel-softmax straight-through one-hot sample (True) or by
    the softmax probabilities, a soft mixture (False) (ablation D2)."""
    gumbel_tau: float = 1.0
    """Gumbel-softmax temperature."""
    cost_normalizer: float = 0.0
    """Vision-token costs are divided by this in the loss; 0 = the mean FULL_VISION cost of the
    training data, so FULL costs about 1."""
    stage1_steps: int = 100
    """Stage 1, the first this many of ``train.max_steps``: cross-entropy towards a fixed target
    action (warm start); 0 skips it. Stage 2 (the cost-aware objective) is the rest."""
    stage1_baseline_name: Stage1Target = "always_full"
    """Stage-1 target: a fixed baseline's action (its ``policy.baseline_*`` settings), or ``oracle`` =
    the cheapest action of the action space that answered right (FULL_VISION when none did)."""
    stage1_label_smoothing: float = 0.1
    """Label smoothing of the stage-1 cross-entropy; keeps the warm-started softmax from saturating
    (a saturated softmax gives stage 2 almost no gradient to move away from the target)."""
    export_dir: str = "checkpoints/policy_tiny"
    """Where the trained head, its manifest, training log and summary are written."""

    def __post_init__(self) -> None:
        for name in ("lambda_cost", "lambda_cal", "cost_normalizer"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"policy_train.{name}: expected a finite value >= 0, found {value}")
        if self.gumbel_tau <= 0:
            raise ConfigError(f"policy_train.gumbel_tau: expected > 0, found {self.gumbel_tau}")
        if self.stage1_steps < 0:
            raise ConfigError(f"policy_train.stage1_steps: expected >= 0, found {self.stage1_steps}")
        if not 0.0 <= self.stage1_label_smoothing < 1.0:
            raise ConfigError(f"policy_train.stage1_label_smoothing: expected 0 <= value < 1, found "
                              f"{self.stage1_label_smoothing}")
        if not self.export_dir:
            raise ConfigError("policy_train.export_dir: expected a directory, found an empty string")


@dataclass
class PolicyDataConfig:
    """The ``policy_data`` section: where the collected data and the generated questions live."""

    path: str = "runs/policy/policy_data_train.npz"
    """The ``.npz`` written (and reused when it exists, unless ``recollect``)."""
    bench_dir: str = "runs/policy/synth_train"
    """The SynthVStar questions of the ``synth`` section; generated here when it holds no benchmark."""
    limit: int | None = None
    """Use at most this many questions of the benchmark (None = all)."""
    recollect: bool = False
    """Run the agent again even when ``path`` exists."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"policy_data.limit: expected >= 1 or null, found {self.limit}")
        if not self.path.endswith(".npz"):
            raise ConfigError(f"policy_data.path: expected a .npz file, found {self.path!r}")


@dataclass
class TrainPolicyConfig(AskConfig):
    """``seal train policy``: the agent that collects the data (every section of ``AskConfig``; its
    ``seed`` also seeds the head's initialisation, minibatches, dropout and Gumbel noise), the
    questions, the head, its objective and its loop. ``models.vqa_path`` is the VQA LLM whose text
    pass the head reads: the head is trained against it. ``policy`` holds the decision rules the head
    is trained for (its escalation is replayed); its ``checkpoint`` is unused."""

    OUT_DIR: ClassVar[str] = "train.out_dir"
    """The field naming the run's folder (its resolved config and run record go there)."""

    synth: SynthConfig = field(default_factory=SynthConfig)
    """The questions generated into ``policy_data.bench_dir`` (never the ``test`` split)."""
    head: HeadConfig = field(default_factory=HeadConfig)
    policy_train: PolicyTrainConfig = field(default_factory=PolicyTrainConfig)
    policy_data: PolicyDataConfig = field(default_factory=PolicyDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    """The head's loop (``max_steps`` = both stages; minibatches drawn with replacement)."""

    def __post_init__(self) -> None:
        binary = self.head.action_space == "binary"
        pt = self.policy_train
        if pt.stage1_steps > self.train.max_steps:
            raise ConfigError(f"policy_train.stage1_steps: expected <= train.max_steps ({self.train.max_steps}), "
                              f"found {pt.stage1_steps}")
        if binary and pt.stage1_baseline_name == "always_coarse":
            raise ConfigError("policy_train.stage1_baseline_name: always_coarse needs head.action_space: ternary")
        if binary and pt.stage1_baseline_name == "uncertainty_threshold" and self.policy.baseline_vision == "coarse":
            raise ConfigError("policy.baseline_vision: coarse (the stage-1 target) needs head.action_space: ternary")

    def ask_config(self) -> AskConfig:
        """The agent's config for collecting the data: this config's agent sections, with the actions
        forced by a fixed policy (the head being trained need not exist yet)."""
        sections = {f.name: getattr(self, f.name) for f in dataclasses.fields(AskConfig)}
        sections["policy"] = dataclasses.replace(self.policy, baseline_name="always_full", checkpoint=None)
        return AskConfig(**sections)
