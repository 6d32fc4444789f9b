"""The training loop: one short function for every trainable thing, read top to bottom (accelerate
for multi-process).

A recipe supplies the model, its data as ``epochs(epoch) -> batch keys`` plus ``collate(key) ->
batch``, and ``loss_fn(model, batch) -> dict`` whose ``"total"`` entry is optimised and whose other
entries are logged. The loop owns optimisation, gradient accumulation, clipping, the LR schedule,
checkpoint/resume and the progress bar.

Several optimizers (adversarial recipes: pruners, discriminator, merger): the recipe passes
``groups``, each an :class:`OptimGroup` owning its parameters and naming the loss entry it
minimises; every step, each group's loss is back-propagated into that group's parameters only
(``backward(inputs=...)``), then each group's gradients are clipped and its optimizer and schedule
step, in the order given. Without ``groups`` the one optimizer minimises ``"total"``.

Exact resume: batch keys are cheap (indices, flips), and the order they come in is a pure function
of the recipe's seed and the number of keys drawn: step ``k`` of N processes trains on keys
``k * grad_accum * N ...`` of the concatenated epochs, rank ``r`` on every N-th of them from the
``r``-th (:mod:`training.distributed`). A run resumed from its step-``k`` checkpoint (model,
optimizer, scheduler and each process's RNG states, :meth:`accelerate.Accelerator.save_state`, and
the number of keys consumed) skips those keys without collating them and continues bit-for-bit as
the uninterrupted run would.

Multi-process: under ``accelerate launch`` the model and the recipe's loss run as one
:class:`training.distributed.StepModule` that accelerate wraps (DDP, FSDP or DeepSpeed); only the
main process writes the log, ``state.json``, the summary and the export (accelerate's
``save_state`` writes the weights and optimizer from the main process and each process's RNG state
from that process).

Seeding is the recipe's: :func:`seed_everything` before the model or the loop, wherever the
recipe's random stream starts (a resumed run gets its RNG state back from the checkpoint).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from training.config import TrainConfig

LossFn = Callable[[Any, Any], dict]
Epochs = Callable[[int], Iterable[Any]]


@dataclass
class OptimGroup:
    """One optimizer of a recipe that trains several parts against different losses."""

    name: str
    """The group's name (logs, errors)."""
    params: list
    """The parameters this optimizer steps (disjoint from every other group's)."""
    loss: str
    """Key of ``loss_fn``'s dict this group minimises."""
    lr: float | None = None
    """Peak learning rate of this group (None: ``train.lr``)."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (each process of a multi-process run with ``seed + its index``)."""
    from accelerate.utils import set_seed

    from training.distributed import process_index

    set_seed(seed + process_index())


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
          log_metrics: Callable[[Any], dict] | None = None, groups: Sequence[OptimGroup] | None = None) -> dict:
    """Optimise ``model`` for ``cfg.max_steps`` optimizer steps, in this process or in each of the N
    processes of ``accelerate launch`` (see :mod:`training.distributed`).

    Args:
        model: a ``torch.nn.Module`` (only parameters with ``requires_grad`` are optimised).
        epochs: ``epoch -> the epoch's batch keys, in order``; the same epoch must give the same keys
            (a recipe shuffles with ``(seed, epoch)``). An endless iterator is one endless epoch. With
            N processes, rank ``r`` trains on keys ``r, r + N, ...`` of this one stream.
        loss_fn: ``(model, batch) -> {"total": scalar tensor, other named terms...}``; it receives the
            plain ``model`` (call any of its methods on it) and runs as the forward of the module that
            accelerate wraps (DDP / FSDP), under ``train.mixed_precision``'s autocast.
        cfg: the ``TrainConfig``.
        collate: ``key -> batch`` (default: the key is the batch); the batch is moved to the device.
        on_save: called on the main process with the trained model and ``out_dir`` after the final
            step (recipes export their weights there); under FSDP / ZeRO-3 the model is a copy made
            before sharding, holding the gathered trained weights.
        log_metrics: ``unwrapped model -> {name: number}`` added to each log line (e.g. metrics on
            the training data); must leave the model's mode and the RNG as it found them.
        groups: several optimizers (see the module docstring), stepped in this order, each on the
            gradient of its own loss entry; None = one optimizer over every trainable parameter
            minimising ``"total"``.

    Returns: a summary dict (steps, final losses, seconds) also written to ``out_dir/train_summary.json``.
    The logged losses of a step are those of its last forward pass, averaged over the processes.
    """
    import torch
    from tqdm import tqdm

    from training.distributed import (KeyLog, StepModule, enable_activation_checkpointing, gather_for_export,
                                      make_accelerator, shard_keys, to_device, weights_sharded)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.activation_checkpointing and not enable_activation_checkpointing(model):
        from seal.core.errors import ConfigError

        raise ConfigError("train.activation_checkpointing: the trained model holds no transformers model that "
                          "supports gradient checkpointing")
    accelerator = make_accelerator(cfg)
    world = accelerator.num_processes
    out = Path(cfg.out_dir)
    ckpt = out / "checkpoint"
    sharded = weights_sharded(accelerator)  # FSDP / ZeRO-3: the export is gathered into a copy made now
    template = copy.deepcopy(model) if sharded and on_save is not None and accelerator.is_main_process else None
    several = bool(groups)
    groups = list(groups) if groups else [OptimGroup("model", [p for p in model.parameters() if p.requires_grad],
                                                     "total")]
    _check_groups(groups)
    optimizers = [torch.optim.AdamW(g.params, lr=g.lr or cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
                  for g in groups]
    schedulers = [make_scheduler(o, cfg) for o in optimizers]
    step_module, *prepared = accelerator.prepare(StepModule(model, loss_fn), *optimizers, *schedulers)
    optimizers, schedulers = prepared[:len(groups)], prepared[len(groups):]
    scheduler = schedulers[0]
    # frozen parameters have no gradient: the norm is the trained ones' (per group with several)
    clipped = [g.params for g in groups] if several else [list(step_module.parameters())]
    inner = accelerator.unwrap_model(step_module).model

    step, keys_done = _resume(accelerator, ckpt, cfg) if cfg.resume and (ckpt / "state.json").is_file() else (0, 0)
    log_path = out / "train_log.jsonl"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    keys = shard_keys(batch_keys(epochs, skip=keys_done), accelerator.process_index, world)
    key_log = KeyLog(out, accelerator.process_index) if cfg.log_keys else None
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not accelerator.is_main_process, desc="train",
               dynamic_ncols=True)
    started = time.time()
    last: dict[str, float] = {}
    step_module.train()
    while step < cfg.max_steps:
        for micro in range(cfg.grad_accum_steps):
            key = next(keys)
            if key_log is not None:
                key_log.write(step + 1, micro, key)
            batch = (collate or (lambda k: k))(key)
            if accelerator.device.type != "cpu":
                batch = to_device(batch, accelerator.device)
            with accelerator.accumulate(step_module):
                with accelerator.autocast():
                    losses = step_module(batch)
                for k, group in enumerate(groups):
                    accelerator.backward(losses[group.loss], retain_graph=k < len(groups) - 1,
                                         **({"inputs": group.params} if several else {}))
                for params, optimizer, sched in zip(clipped, optimizers, schedulers):
                    if accelerator.sync_gradients and cfg.grad_clip > 0:
                        accelerator.clip_grad_norm_(params, cfg.grad_clip)
                    optimizer.step()
                    sched.step()
                    optimizer.zero_grad()
        step += 1
        keys_done += cfg.grad_accum_steps * world
        last = _logged(losses, accelerator)
        bar.update(1)
        bar.set_postfix(loss=f"{last[groups[0].loss]:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == cfg.max_steps):
            extra = log_metrics(inner) if log_metrics is not None else {}
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "lr": scheduler.get_last_lr()[0],
                                    "seconds": round(time.time() - started, 2), **last, **extra}) + "\n")
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            _save(accelerator, ckpt, {"step": step, "keys": keys_done, "processes": world,
                                      "grad_accum_steps": cfg.grad_accum_steps})
    bar.close()
    accelerator.wait_for_everyone()
    summary = {"steps": step, "final": last, "seconds": round(time.time() - started, 2),
               "processes": world}
    exported = gather_for_export(accelerator, step_module, template) if sharded and on_save is not None else inner
    if accelerator.is_main_process:
        if on_save is not None:
            on_save(exported, out)
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return summary


def _check_groups(groups: list[OptimGroup]) -> None:
    """Each group owns some trainable parameters, none shared with another group."""
    seen: set[int] = set()
    for g in groups:
        ids = {id(p) for p in g.params}
        if not ids or ids & seen or any(not p.requires_grad for p in g.params):
            raise ValueError(f"optimizer group {g.name!r}: expected trainable parameters of its own "
                             f"({len(ids)} given, {len(ids & seen)} shared with an earlier group)")
        seen |= ids


def _logged(losses: dict, accelerator) -> dict[str, float]:
    """The step's loss terms as floats; with several processes, each term's mean over them."""
    values = {k: float(v.detach().mean()) if hasattr(v, "detach") else float(v) for k, v in losses.items()}
    if accelerator.num_processes == 1:
        return values
    import torch

    names = list(values)  # the same terms, in the same order, on every process
    stacked = torch.tensor([values[k] for k in names], dtype=torch.float64, device=accelerator.device)
    mean = accelerator.reduce(stacked, reduction="mean")
    return {k: float(v) for k, v in zip(names, mean.tolist())}


def _save(accelerator, ckpt: Path, state: dict) -> None:
    """Every process saves its part of the resumable state (accelerate writes the model, optimizer and
    scheduler from the main process, each process's RNG state from that process); the main process
    then writes ``state.json`` (the step, the keys consumed)."""
    accelerator.wait_for_everyone()
    accelerator.save_state(str(ckpt))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (ckpt / "state.json").write_text(json.dumps(state))


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


def _resume(accelerator, ckpt: Path, cfg: TrainConfig) -> tuple[int, int]:
    """Load model, optimizer, scheduler and RNG states from ``ckpt``; returns the step it was saved at
    and the number of batch keys the run had consumed (its processes together)."""
    try:
        accelerator.load_state(str(ckpt))
    except (RuntimeError, KeyError, ValueError) as exc:  # another model's or optimizer's state
        from seal.core.errors import InputError

        first = " ".join(str(exc).split())[:300]
        raise InputError(f"the checkpoint does not fit this model ({first}); train into a new train.out_dir "
                         "or pass --train.resume=false to start over", ckpt) from None
    state = json.loads((ckpt / "state.json").read_text())
    step = int(state["step"])
    keys = int(state.get("keys", step * cfg.grad_accum_steps))  # written before multi-process runs: one process
    accelerator.print(f"resumed from {ckpt} at step {step} ({keys} batches consumed)")
    return step, keys
