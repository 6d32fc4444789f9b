"""What the training loop needs to run as one of N processes (``accelerate launch --num_processes N``).

- :class:`StepModule`: the one module handed to ``accelerate.prepare``. Its ``forward(batch)`` is the
  recipe's ``loss_fn(model, batch)`` on the plain model, so the whole step (``encode_images``, the
  model's forward, the criterion, any auxiliary loss) runs inside the one DDP / FSDP forward: the
  gradients of every parameter it touched are synchronised, and a recipe calls its model's methods
  on the model itself, never on a ``DistributedDataParallel`` wrapper.
- :func:`shard_keys`: rank ``r`` of ``N`` trains on keys ``r, r + N, r + 2N, ...`` of the recipe's one
  stream of per-process batches, so the ranks' batches are disjoint, a pure function of the seed,
  and the ``N`` batches of a step are ``N`` consecutive batches of the stream (when a recipe cuts a
  shuffled order into consecutive slices, the same examples as one process with ``N`` times the
  batch).
- :func:`make_accelerator`: the ``Accelerator`` of one loop (gloo on CPU, NCCL on GPUs, as launched),
  with ``train.grad_accum_steps`` and ``train.mixed_precision``.
- :func:`to_device` moves a batch (tensors in dicts, lists, tuples and dataclasses) to the device.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from seal.core.errors import ConfigError
from training.config import TrainConfig


class StepModule(torch.nn.Module):
    """``forward(batch) = loss_fn(model, batch)``: one training step's losses as one module call.

    ``model`` is registered as the submodule ``model`` (checkpoints hold its tensors under
    ``model.``); ``loss_fn`` receives the plain model and may call any of its methods.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[Any, Any], dict]) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> dict:
        """The loss dict of ``batch``: ``"total"`` (scalar, optimised) and other logged terms."""
        return self.loss_fn(self.model, batch)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As ``torch.nn.Module``'s; a state of the bare model (a checkpoint written before the loop
        wrapped models in this module, keys without ``model.``) loads into ``model``."""
        if state_dict and not any(k.startswith("model.") for k in state_dict):
            state_dict = {f"model.{k}": v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def process_state():
    """accelerate's ``PartialState`` of this process: its index and the process count, from the
    launcher's ``RANK`` / ``WORLD_SIZE``. On a machine without a GPU it must be created with
    ``cpu=True`` (gloo), or a launched process takes itself for the only one."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def process_index() -> int:
    """This process's index among the run's processes (0 in a plain process)."""
    return process_state().process_index


def num_processes() -> int:
    """How many processes train together (1 in a plain process)."""
    return process_state().num_processes


def main_process_first():
    """A context in which the main process runs first and the others wait for it (e.g. around a data
    cache that the first process writes and the others then read)."""
    return process_state().main_process_first()


def shard_keys(keys: Iterator[Any], rank: int, world: int) -> Iterator[Any]:
    """Rank ``rank``'s keys of ``keys``: those at positions ``rank, rank + world, ...``."""
    return itertools.islice(keys, rank, None, world)


def make_accelerator(cfg: TrainConfig):
    """The ``Accelerator`` of one loop: ``cfg.grad_accum_steps``, ``cfg.mixed_precision``, CPU when no GPU.

    Raises:
        ConfigError: ``accelerate launch`` was given another mixed precision than ``cfg``'s, or fp16
            was asked for without a GPU.
    """
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if launched is not None and launched != cfg.mixed_precision:
        raise ConfigError(f"train.mixed_precision: {cfg.mixed_precision!r}, but accelerate launch set {launched!r} "
                          f"(its --mixed_precision / config file); set --train.mixed_precision={launched} or launch "
                          f"with mixed_precision: '{cfg.mixed_precision}' (the seal config decides the precision)")
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.mixed_precision: fp16 needs a GPU (found none); use bf16 or no on CPU")
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, cfg.mixed_precision):
        # an earlier loop of this command (e.g. the search model's main loop before its crop matcher's)
        # ran at another precision: accelerate keeps one per process unless its state is reset
        AcceleratorState._reset_state(reset_partial_state=False)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
    # split_batches: the LR schedule counts optimizer steps, whatever the number of processes (accelerate
    # would otherwise step it once per process, as if each process's batches were extra steps)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum_steps, mixed_precision=cfg.mixed_precision,
                              cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp],
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:  # DeepSpeed sizes its engine from its config, not from a dataloader (there is none)
        ds = plugin.deepspeed_config
        if ds.get("gradient_accumulation_steps") not in (None, "auto", cfg.grad_accum_steps):
            raise ConfigError(f"train.grad_accum_steps: {cfg.grad_accum_steps}, but the DeepSpeed config says "
                              f"gradient_accumulation_steps: {ds['gradient_accumulation_steps']}; make them equal")
        ds["gradient_accumulation_steps"] = cfg.grad_accum_steps
        ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
    return accelerator


def weights_sharded(accelerator) -> bool:
    """Whether each process holds only a shard of the weights (FSDP, DeepSpeed ZeRO-3), so that the
    model a process holds cannot be exported as it is."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    plugin = accelerator.state.deepspeed_plugin if accelerator.distributed_type == DistributedType.DEEPSPEED else None
    return plugin is not None and plugin.zero_stage == 3


def gather_for_export(accelerator, step_module, template: torch.nn.Module | None) -> torch.nn.Module | None:
    """The trained model whole, on the main process: the full state dict accelerate gathers from every
    process (a collective: every process calls this; FSDP needs ``fsdp_state_dict_type:
    FULL_STATE_DICT``, ZeRO-3 ``zero3_save_16bit_model: true``), loaded strictly into ``template``, a
    copy of the model made before it was sharded (None on the other processes, which get None)."""
    state = accelerator.get_state_dict(step_module)
    if template is None:
        return None
    template.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=True)
    return template


def enable_activation_checkpointing(model: torch.nn.Module) -> int:
    """Turn on non-reentrant gradient checkpointing in every transformers model inside ``model`` that
    supports it (the LLM, the vision tower); returns how many."""
    from transformers import PreTrainedModel

    count = 0
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing \
                and not module.is_activation_checkpointing:
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            count += 1
    return count


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor moved to ``device`` (through dicts, lists, tuples and dataclasses)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return type(batch)((k, to_device(v, device)) for k, v in batch.items())
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(to_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: to_device(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch) if f.init})
    return batch


class KeyLog:
    """``train.log_keys``: every batch key this process trains on, one JSON line per forward pass, in
    ``out_dir/keys.rank{R}.jsonl`` (``{"step", "micro", "key"}``; step counted from 1)."""

    def __init__(self, out_dir: Path, rank: int) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / f"keys.rank{rank}.jsonl"

    def write(self, step: int, micro: int, key: Any) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "micro": micro, "key": jsonable(key)}) + "\n")


def jsonable(value: Any) -> Any:
    """``value`` (a batch key: numbers, arrays, tensors, in lists / tuples / dicts) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
