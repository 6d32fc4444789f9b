"""What every training recipe does around its own model: refuse the test split, set the threads,
and finish an export with the run record and the training log."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from seal.errors import ConfigError

if TYPE_CHECKING:
    from seal.config import Config

T = TypeVar("T")


def prepare_run(cfg: "Config", model_name: str) -> None:
    """Raise on ``synth.split: test`` (the held-out split) and apply ``train.threads``."""
    import torch

    if cfg.synth.split == "test":
        raise ConfigError(f"synth.split: the {model_name} recipe trains on 'train' or 'val' scenes, found 'test' "
                          "(the held-out evaluation split)")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)


def finish_export(export_dir: Path, cfg: "Config", out_dir: Path, command: list[str] | None) -> Path:
    """Write ``config.yaml`` / ``run.json`` into ``export_dir`` and copy ``out_dir/train_log.jsonl`` there."""
    from seal.cli.common import write_run_record

    write_run_record(export_dir, cfg, command)
    log = Path(out_dir) / "train_log.jsonl"
    if log.is_file():
        shutil.copyfile(log, export_dir / "train_log.jsonl")
    return export_dir


def ordered_map(job: Callable[[int], T], indices: list[int], workers: int) -> Iterator[T]:
    """``job(i)`` for each index, in order, in this process or in a spawned pool of ``workers``
    one-thread processes (``job`` must pickle: a module-level function or a frozen dataclass)."""
    if workers <= 1 or len(indices) < 2:
        yield from map(job, indices)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(min(workers, len(indices)), initializer=_one_thread) as pool:
        yield from pool.imap(job, indices, chunksize=2)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
