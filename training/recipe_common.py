"""What every training recipe does around its own model: refuse the test split, set the threads,
record how an export was made (its manifest's ``recipe``, the user's data it read) and copy the
training log beside it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from seal.core.errors import ConfigError

if TYPE_CHECKING:
    from eval.synth.config import SynthConfig
    from training.config import TrainConfig

T = TypeVar("T")


def prepare_run(synth: "SynthConfig", train: "TrainConfig", model_name: str, synthetic: bool = True) -> None:
    """Raise on ``synth.split: test`` (the held-out split) when the run renders scenes (``synthetic``;
    not on the user's data) and apply ``train.threads``."""
    import torch

    if synthetic and synth.split == "test":
        raise ConfigError(f"synth.split: the {model_name} recipe trains on 'train' or 'val' scenes, found 'test' "
                          "(the held-out evaluation split)")
    if train.threads:
        torch.set_num_threads(train.threads)


def recipe_record(command: list[str] | None, **extra: Any) -> dict[str, Any]:
    """How a checkpoint was made, for its manifest: the command, the git revision, and ``extra``."""
    from seal.core.runs import command_line, git_revision

    return {"command": command if command is not None else command_line(), "git_revision": git_revision(), **extra}


def data_record(path: str, image_root: str = "") -> dict[str, Any]:
    """The user's training data as a manifest's recipe records it: the path, the image root and, for
    a data file, its hash."""
    from seal.core.manifest import file_hash

    p = Path(path)
    return {"path": path, "image_root": image_root, **({"hash": file_hash(p)} if p.is_file() else {})}


def copy_train_log(out_dir: str | Path, export_dir: str | Path) -> None:
    """Copy the loop's ``out_dir/train_log.jsonl`` beside the exported model (when there is one)."""
    log = Path(out_dir) / "train_log.jsonl"
    if log.is_file():
        shutil.copyfile(log, Path(export_dir) / "train_log.jsonl")


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
