"""The training loop: one short function for every trainable thing, read top to bottom (accelerate
for multi-process).

A recipe supplies the model, its data as ``epochs(epoch) -> batch keys`` plus ``collate(key) ->
batch``, and ``loss_fn(model, batch) -> dict`` whose ``"total"`` entry is optimised and whose other
entries are logged. The loop owns optimisation, gradient accumulation, clipping, the LR schedule,
checkpoint/resume and the progress bar.

Exact resume: batch keys are cheap (indices, flips), and the order they come in is a pure function
of the recipe's seed and the number of keys drawn: step ``k`` trains on keys ``k * grad_accum ...``
of the concatenated epochs. A run resumed from its step-``k`` checkpoint (model, optimizer,
scheduler and RNG states, :meth:`accelerate.Accelerator.save_state`) skips the first keys without
collating them and continues bit-for-bit as the uninterrupted run would.

Seeding is the recipe's: :func:`seed_everything` before the model or the loop, wherever the
recipe's random stream starts (a resumed run gets its RNG state back from the checkpoint).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from training.config import TrainConfig

LossFn = Callable[[Any, Any], dict]
Epochs = Callable[[int], Iterable[Any]]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (each process of a multi-process run with ``seed + its index``)."""
    from accelerate import PartialState
    from accelerate.utils import set_seed

    set_seed(seed + PartialState().process_index)


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """``warmup_cosine``: linear warm-up then cosine decay, as a multiplier of ``cfg.lr``."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine

    return f


def make_scheduler(optimizer, cfg: TrainConfig):
    """The ``cfg.schedule`` learning-rate scheduler, stepped once per optimizer step."""
    import torch

    if cfg.schedule == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.max_steps,
                                                   pct_start=cfg.warmup_steps / cfg.max_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))


def train(model, epochs: Epochs, loss_fn: LossFn, cfg: TrainConfig, collate: Callable[[Any], Any] | None = None,
          on_save: Callable[[Any, Path], None] | None = None,
          log_metrics: Callable[[Any], dict] | None = None) -> dict:
    """Optimise ``model`` for ``cfg.max_steps`` optimizer steps.

    Args:
        model: a ``torch.nn.Module`` (only parameters with ``requires_grad`` are optimised).
        epochs: ``epoch -> the epoch's batch keys, in order``; the same epoch must give the same keys
            (a recipe shuffles with ``(seed, epoch)``). An endless iterator is one endless epoch.
        loss_fn: ``(model, batch) -> {"total": scalar tensor, other named terms...}``.
        cfg: the ``TrainConfig``.
        collate: ``key -> batch`` (default: the key is the batch).
        on_save: called on the main process with the unwrapped model and ``out_dir`` after the
            final step (recipes export their weights there).
        log_metrics: ``unwrapped model -> {name: number}`` added to each log line (e.g. metrics on
            the training data); must leave the model's mode and the RNG as it found them.

    Returns: a summary dict (steps, final losses, seconds) also written to ``out_dir/train_summary.json``.
    """
    import torch
    from accelerate import Accelerator
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum_steps, cpu=not torch.cuda.is_available())
    out = Path(cfg.out_dir)
    ckpt = out / "checkpoint"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step = _resume(accelerator, ckpt) if cfg.resume and (ckpt / "state.json").is_file() else 0
    log_path = out / "train_log.jsonl"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    stream = map(collate or (lambda key: key), batch_keys(epochs, skip=step * cfg.grad_accum_steps))
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not accelerator.is_main_process, desc="train",
               dynamic_ncols=True)
    started = time.time()
    last: dict[str, float] = {}
    model.train()
    while step < cfg.max_steps:
        for _ in range(cfg.grad_accum_steps):
            batch = next(stream)
            with accelerator.accumulate(model):
                losses = loss_fn(model, batch)
                accelerator.backward(losses["total"])
                if accelerator.sync_gradients and cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        step += 1
        last = {k: float(v.detach().mean()) if hasattr(v, "detach") else float(v) for k, v in losses.items()}
        bar.update(1)
        bar.set_postfix(loss=f"{last['total']:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == cfg.max_steps):
            extra = log_metrics(accelerator.unwrap_model(model)) if log_metrics is not None else {}
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "lr": scheduler.get_last_lr()[0],
                                    "seconds": round(time.time() - started, 2), **last, **extra}) + "\n")
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            accelerator.wait_for_everyone()
            accelerator.save_state(str(ckpt))
            if accelerator.is_main_process:
                (ckpt / "state.json").write_text(json.dumps({"step": step}))
    bar.close()
    accelerator.wait_for_everyone()
    summary = {"steps": step, "final": last, "seconds": round(time.time() - started, 2),
               "processes": accelerator.num_processes}
    if accelerator.is_main_process:
        if on_save is not None:
            on_save(accelerator.unwrap_model(model), out)
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def batch_keys(epochs: Epochs, skip: int = 0) -> Iterator[Any]:
    """The keys of epochs 0, 1, 2, ... in order, the first ``skip`` of them left out (not collated)."""

    def stream() -> Iterator[Any]:
        for epoch in itertools.count():
            empty = True
            for key in epochs(epoch):
                empty = False
                yield key
            if empty:
                raise ValueError(f"epoch {epoch} produced no batches")

    return itertools.islice(stream(), skip, None)


def _resume(accelerator, ckpt: Path) -> int:
    """Load model, optimizer, scheduler and RNG states from ``ckpt``; returns the step it was saved at."""
    try:
        accelerator.load_state(str(ckpt))
    except (RuntimeError, KeyError, ValueError) as exc:  # another model's or optimizer's state
        from seal.core.errors import InputError

        first = " ".join(str(exc).split())[:300]
        raise InputError(f"the checkpoint does not fit this model ({first}); train into a new train.out_dir "
                         "or pass --train.resume=false to start over", ckpt) from None
    step = int(json.loads((ckpt / "state.json").read_text())["step"])
    accelerator.print(f"resumed from {ckpt} at step {step}")
    return step
