"""``TrainConfig``: optimisation, schedule, checkpointing and logging of every training recipe."""

from __future__ import annotations

from dataclasses import dataclass

from seal.errors import ConfigError


@dataclass
class TrainConfig:
    out_dir: str = "runs/train"
    """Where checkpoints, the training log, the resolved config and the final weights go."""
    max_steps: int = 1000
    """Optimizer steps (after gradient accumulation)."""
    batch_size: int = 8
    """Examples per forward pass per process."""
    grad_accum_steps: int = 1
    """Forward passes accumulated per optimizer step."""
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 50
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    log_every: int = 10
    save_every: int = 200
    """Checkpoint (model, optimizer, scheduler, RNG, step) every this many optimizer steps."""
    resume: bool = True
    """Resume from ``out_dir/checkpoint`` when it exists."""
    seed: int = 0
    num_workers: int = 0
    threads: int = 0
    """torch intra-op threads per process; 0 = leave torch's default."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: expected >= 1, found {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr: expected > 0, found {self.lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0:
            raise ConfigError("train.warmup_steps and train.grad_clip must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio: expected 0..1, found {self.min_lr_ratio}")
