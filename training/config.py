"""``TrainConfig``: the settings of one run of the training loop (:func:`training.loop.train`).

Every trainable thing (the VQA LLM, the search model, its detector stem and crop matcher, the policy
head) is optimised by the same loop, so their optimisation, schedule, checkpointing and logging
settings are this one class. A command's main loop is its ``train`` section; a stage that runs a
loop of its own (the detector stem, the crop matcher) carries its own ``train`` sub-section. The
run's seed is not here: it is the command's one ``seed`` (model initialisation, data, batch order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seal.core.errors import ConfigError

Schedule = Literal["warmup_cosine", "one_cycle"]
MixedPrecision = Literal["no", "fp16", "bf16"]


@dataclass
class TrainConfig:
    out_dir: str = "runs/train"
    """Where this loop's resumable state (``checkpoint/``), training log and summary go."""
    max_steps: int = 1000
    """Optimizer steps (after gradient accumulation)."""
    batch_size: int = 8
    """Examples per forward pass per process (N processes of ``accelerate launch`` train on N times as
    many per optimizer step, each on its own share; see :mod:`training.distributed`)."""
    grad_accum_steps: int = 1
    """Forward passes accumulated per optimizer step (per process)."""
    mixed_precision: MixedPrecision | bool = "no"
    """``no`` (an unquoted YAML ``no`` reads as false: taken as ``no``), ``bf16`` (GPU or CPU) or ``fp16``
    (GPU only; accelerate scales the loss): autocast over the whole step, weights and optimizer states
    kept in their own dtype. ``accelerate launch`` must be given the same (or none): the config
    decides the precision."""
    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW's betas (``one_cycle`` cycles the first one itself)."""
    schedule: Schedule = "warmup_cosine"
    """``warmup_cosine``: linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``.
    ``one_cycle``: torch's ``OneCycleLR`` (warm-up from ``lr / 25`` over ``warmup_steps``, cosine
    annealing to ``lr / 2.5e5``, beta1 cycled 0.95 -> 0.85 -> 0.95; ``min_lr_ratio`` unused)."""
    warmup_steps: int = 50
    """Optimizer steps of the warm-up."""
    min_lr_ratio: float = 0.1
    """``warmup_cosine``: the final learning rate as a fraction of ``lr`` (1 = constant after warm-up)."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    log_every: int = 10
    """Append a line to ``out_dir/train_log.jsonl`` every this many optimizer steps (and at the last)."""
    save_every: int = 200
    """Checkpoint (model, optimizer, scheduler, RNG, step) every this many optimizer steps."""
    resume: bool = True
    """Resume from ``out_dir/checkpoint`` when it exists (the data stream resumes where it stopped)."""
    threads: int = 0
    """torch intra-op threads per process; 0 = leave torch's default."""
    activation_checkpointing: bool = False
    """Recompute each transformer layer's activations in the backward pass instead of keeping them
    (transformers' gradient checkpointing, non-reentrant, on every transformers model inside the
    trained model): a 7B step then keeps one layer input per layer (docs/TRAINING_7B.md), at about
    a third more compute."""
    find_unused_parameters: bool = True
    """Multi-process (DDP) only: let a step leave some trained parameters without a gradient, as a
    fully trained vision tower's last layer, which LLaVA's features (taken from the penultimate
    layer) never use. ``false`` saves DDP a walk over the autograd graph per step when every trained
    parameter is used."""
    log_keys: bool = False
    """Append every batch key each process trains on to ``out_dir/keys.rank{R}.jsonl`` (to audit which
    data each process saw)."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if not self.out_dir:
            raise ConfigError("train.out_dir: expected a directory, found an empty string")
        for name in ("max_steps", "batch_size", "grad_accum_steps", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: expected >= 1, found {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr: expected > 0, found {self.lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.threads < 0:
            raise ConfigError(f"train.warmup_steps / grad_clip / threads: expected >= 0, found {self.warmup_steps} / "
                              f"{self.grad_clip} / {self.threads}")
        if self.mixed_precision is False:
            self.mixed_precision = "no"
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"train.mixed_precision: expected no, fp16 or bf16, found {self.mixed_precision!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio: expected 0..1, found {self.min_lr_ratio}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas: expected two values in [0, 1), found {list(self.betas)}")
        if self.schedule == "one_cycle" and not 2 <= self.warmup_steps < self.max_steps:
            raise ConfigError(f"train.warmup_steps: one_cycle needs 2 <= warmup_steps < max_steps, found "
                              f"{self.warmup_steps} of {self.max_steps}")


def check_base_dtype(section: str, base_dtype: str, mixed_precision: str) -> None:
    """A half-precision base (``<section>.base_dtype``) trains only under the same autocast: its
    layers receive the fp32 adapter's activations, which autocast casts for them.

    Raises:
        ConfigError: ``base_dtype`` is ``bf16`` / ``fp16`` and ``train.mixed_precision`` is not the same.
    """
    if base_dtype != "fp32" and base_dtype != mixed_precision:
        raise ConfigError(f"{section}.base_dtype: a {base_dtype} base trains under train.mixed_precision: "
                          f"{base_dtype}, found {mixed_precision!r}")
