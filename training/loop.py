"""The training loop: one short function, read top to bottom (accelerate for multi-process).

A recipe supplies the model, a batch iterator factory and ``loss_fn(model, batch) -> dict`` whose
``"total"`` entry is optimised and whose other entries are logged. The loop owns optimisation,
gradient accumulation, clipping, the LR schedule, checkpoint/resume and the progress bar.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from training.config import TrainConfig

LossFn = Callable[[Any, Any], dict]


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up then cosine decay, as a multiplier of ``cfg.lr``."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine

    return f


def train(model, batches: Callable[[int], Iterable[Any]], loss_fn: LossFn, cfg: TrainConfig,
          on_save: Callable[[Any, Path], None] | None = None) -> dict:
    """Optimise ``model`` for ``cfg.max_steps`` optimizer steps.

    Args:
        model: a ``torch.nn.Module`` (only parameters with ``requires_grad`` are optimised).
        batches: ``epoch -> iterable of batches`` (re-called when an epoch runs out).
        loss_fn: ``(model, batch) -> {"total": scalar tensor, other named terms...}``.
        cfg: the ``TrainConfig``.
        on_save: called on the main process with the unwrapped model and ``out_dir`` after the
            final step (recipes save their weights there).

    Returns: a summary dict (steps, final losses, seconds) also written to ``out_dir/train_summary.json``.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum_steps, cpu=not torch.cuda.is_available())
    set_seed(cfg.seed + accelerator.process_index)
    out = Path(cfg.out_dir)
    ckpt = out / "checkpoint"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step = 0
    if cfg.resume and (ckpt / "state.json").is_file():
        try:
            accelerator.load_state(str(ckpt))
        except (RuntimeError, KeyError, ValueError) as exc:  # another model's or optimizer's state
            from seal.errors import InputError

            first = " ".join(str(exc).split())[:300]
            raise InputError(f"the checkpoint does not fit this model ({first}); train into a new train.out_dir "
                             "or pass --train.resume=false to start over", ckpt) from None
        step = json.loads((ckpt / "state.json").read_text())["step"]
        accelerator.print(f"resumed from {ckpt} at step {step}")
    log_path = out / "train_log.jsonl"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    stream = _batch_stream(batches, start_epoch=step)
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
        bar.set_postfix(loss=f"{last['total']:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == cfg.max_steps):
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "lr": scheduler.get_last_lr()[0],
                                    "seconds": round(time.time() - started, 2), **last}) + "\n")
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


def _batch_stream(batches: Callable[[int], Iterable[Any]], start_epoch: int = 0) -> Iterator[Any]:
    epoch = start_epoch
    while True:
        empty = True
        for b in batches(epoch):
            empty = False
            yield b
        if empty:
            raise ValueError("the batch iterator produced no batches")
        epoch += 1
