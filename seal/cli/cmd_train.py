"""``seal train KIND``: run a training recipe (``vqa``; the lead adds ``vsm`` and ``policy``).

``seal train vqa --config configs/train/vqa_tiny.yaml [--train.max_steps=...]`` trains the VQA LLM
(:mod:`training.vqa_recipe`) and exports it to ``vqa_train.export_dir``. The resolved config and a
run record go to ``train.out_dir`` before training starts; a final JSON summary is printed as the
last stdout line.

A recipe is one entry of :data:`RECIPES`: ``kind -> function(cfg, command) -> summary dict``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from seal.cli.common import add_config_args, print_json_line, resolve_config
from seal.core.outputs import writable_dir, write_errors
from seal.core.runs import write_run_record
from typing import Any as Config  # the recipe's own config class, resolved in run()


def _train_vqa(cfg: Config, command: list[str]) -> dict:
    from training.vqa_recipe import run

    return run(cfg, command, log=lambda msg: print(msg, flush=True))


def _train_vsm(cfg: Config, command: list[str]) -> dict:
    from training.vsm_recipe import run

    return run(cfg, command, log=lambda msg: print(msg, flush=True))


def _train_crop_check(cfg: Config, command: list[str]) -> dict:
    from training.crop_check_recipe import run

    return run(cfg, command, log=lambda msg: print(msg, flush=True))


def _train_policy(cfg: Config, command: list[str]) -> dict:
    from training.policy_data import run

    return run(cfg, log=lambda msg: print(msg, flush=True))


RECIPES: dict[str, Callable[[Config, list[str]], dict]] = {"vqa": _train_vqa, "vsm": _train_vsm,
                                                           "crop-check": _train_crop_check,
                                                           "policy": _train_policy}
"""Model kind -> recipe ``(resolved config, command line) -> summary``."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (vqa, vsm, crop-check, policy) from a YAML recipe")
    p.add_argument("kind", choices=sorted(RECIPES), help="which model to train")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seal.config import command_config

    cfg = resolve_config(args, command_config("train"))
    command = ["seal", *sys.argv[1:]] if sys.argv else ["seal", "train", args.kind]
    writable_dir(cfg.train.out_dir, "train.out_dir")  # a read-only folder, a file or a full disk: before training
    with write_errors(cfg.train.out_dir, "train.out_dir"):  # disk full while writing: one line
        write_run_record(cfg.train.out_dir, cfg, command)
        summary = RECIPES[args.kind](cfg, command)
    print_json_line({"kind": args.kind, **summary})
    return 0
