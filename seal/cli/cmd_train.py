"""``seal train KIND``: run the training recipe of one model kind (vqa, vsm, crop-matcher, policy).

``seal train vsm --recipe tiny [--config more.yaml] [--train.max_steps=3] [--seed 1]`` resolves the
command's own config (``train-vsm`` of :data:`seal.config.COMMANDS`) from the recipe's stack of
YAMLs (``configs/train/vsm/tiny.yaml`` and the files it includes), then the ``--config`` files, then
the overrides; writes it with a run record into the run's folder (``train.out_dir``) before training
starts; runs the recipe; prints a JSON summary as the last stdout line.

A recipe is one entry of :data:`RECIPES`: ``kind -> module`` whose ``run(cfg, command, log)``
returns the summary.

Fine-tuning on the user's own data (``vqa`` and ``vsm``): ``seal train vqa --base DIR --data FILE
[--image-root DIR]`` sets ``vqa_train.base`` (``vsm_train.base``), ``data.path`` and
``data.image_root`` (the flags win over ``--config`` files, dotted overrides over the flags); without
``--recipe`` such a run uses the ``lora`` recipe (``configs/train/KIND/lora.yaml``).

A value-of-vision head for another VQA model: ``seal train policy --vqa DIR`` sets
``models.vqa_path`` and keeps that model's run, data and head apart from the shipped ones
(``runs/policy/<DIR name>/``: ``policy_data_train.npz``, the run and ``head/``); without ``--recipe``
it uses the ``tiny`` recipe.

Under ``accelerate launch`` every process runs the recipe; only the main process writes the run
record and prints the summary.
"""

from __future__ import annotations

import argparse
import functools
import importlib
from pathlib import Path

from seal.cli.common import add_config_args, print_json_line
from seal.core.errors import InputError
from seal.core.outputs import writable_dir, write_errors
from seal.core.paths import PROJECT_ROOT
from seal.core.runs import command_line, write_run_record

RECIPES: dict[str, str] = {"vqa": "training.vqa_recipe", "vsm": "training.vsm_recipe",
                           "crop-matcher": "training.crop_matcher_recipe", "policy": "training.policy_recipe",
                           "merger": "training.merger_recipe",
                           "pruners": "training.pruner_recipe"}
"""Model kind -> the recipe module (``run(cfg, command, log) -> summary``)."""

USER_DATA_KINDS: dict[str, str] = {"vqa": "vqa_train", "vsm": "vsm_train"}
"""Kinds that train on a real base and the user's data -> the section holding ``base``."""
USER_DATA_RECIPE = "lora"
"""The recipe of ``--base`` / ``--data`` runs given no ``--recipe``."""
POLICY_RECIPE = "tiny"
"""The recipe of ``seal train policy --vqa DIR`` given no ``--recipe``."""

RECIPE_DIR = PROJECT_ROOT / "configs" / "train"
"""``--recipe NAME`` of kind ``K`` is ``RECIPE_DIR/K/NAME.yaml`` (``crop-matcher``: ``crop_matcher/``)."""


def recipe_file(kind: str, name: str) -> Path:
    """The YAML that names the recipe stack ``name`` of ``kind``.

    Raises:
        InputError: no such recipe (the message lists the known ones).
    """
    folder = RECIPE_DIR / kind.replace("-", "_")
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise InputError(f"--recipe {name}: no such {kind} recipe (known: {known})", path)
    return path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (vqa, vsm, crop-matcher, policy) from a recipe")
    p.add_argument("kind", choices=sorted(RECIPES), help="which model to train")
    p.add_argument("--recipe", metavar="NAME", help="a named stack of YAMLs, configs/train/KIND/NAME.yaml "
                                                    "(e.g. tiny: the shipped model's), under --config files")
    p.add_argument("--seed", type=int, help="the run's seed (the config's top-level seed)")
    p.add_argument("--base", metavar="DIR", help="vqa / vsm: a real checkpoint to fine-tune (vqa_train.base / "
                                                 "vsm_train.base; default recipe: lora)")
    p.add_argument("--data", metavar="PATH", help="vqa: LLaVA-format JSON or V*Bench folder; vsm: COCO JSON or "
                                                  "V*Bench folder (data.path)")
    p.add_argument("--image-root", metavar="DIR", help="folder the data's image paths are relative to "
                                                       "(data.image_root)")
    p.add_argument("--vqa", metavar="DIR", help="policy: the VQA model the head is fitted to (models.vqa_path); "
                                                "its data, run and head go to runs/policy/<DIR name>/")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seal.config import command_config, load

    flags = user_data_overrides(args)
    recipe = args.recipe or (USER_DATA_RECIPE if flags else None)
    if getattr(args, "vqa", None) is not None:
        if args.kind != "policy":
            raise InputError(f"--vqa: only seal train policy fits a head to a VQA model, not {args.kind}")
        flags += policy_head_overrides(Path(args.vqa))
        recipe = args.recipe or POLICY_RECIPE
    files = ([recipe_file(args.kind, recipe)] if recipe else []) + list(args.config)
    seed = [] if args.seed is None else [f"seed={args.seed}"]
    overrides = flags + list(getattr(args, "overrides", []) or []) + seed
    cls = command_config(f"train-{args.kind}")
    cfg = load(files, overrides, cls=cls)
    out_dir = functools.reduce(getattr, cls.OUT_DIR.split("."), cfg)
    command = command_line()
    writable_dir(out_dir, cls.OUT_DIR)  # a read-only folder, a file or a full disk: before training
    from training.distributed import process_index

    main_process = process_index() == 0
    with write_errors(out_dir, cls.OUT_DIR):  # disk full while writing: one line
        if main_process:
            write_run_record(out_dir, cfg, command)
        recipe = importlib.import_module(RECIPES[args.kind])
        summary = recipe.run(cfg, command, log=lambda msg: print(msg, flush=True))
    if main_process:
        print_json_line({"kind": args.kind, **summary})
    return 0


def policy_head_overrides(vqa: Path) -> list[str]:
    """``--vqa DIR`` as overrides: the model, and its own data file, run folder and head folder."""
    import json

    if not vqa.is_dir():
        raise InputError("--vqa: expected a VQA model directory", vqa)
    home = Path("runs") / "policy" / (vqa.resolve().name or "vqa")
    return [f"models.vqa_path={json.dumps(str(vqa))}",
            f"policy_data.path={json.dumps(str(home / 'policy_data_train.npz'))}",
            f"train.out_dir={json.dumps(str(home / 'run'))}",
            f"policy_train.export_dir={json.dumps(str(home / 'head'))}"]


def user_data_overrides(args: argparse.Namespace) -> list[str]:
    """``--base`` / ``--data`` / ``--image-root`` as dotted overrides (values quoted: a path stays a string).

    Raises:
        InputError: a flag given to a kind that does not read the user's data.
    """
    import json

    given = {flag: value for flag, value in (("--base", args.base), ("--data", args.data),
                                             ("--image-root", args.image_root)) if value is not None}
    if given and args.kind not in USER_DATA_KINDS:
        raise InputError(f"{', '.join(given)}: only seal train {' / '.join(USER_DATA_KINDS)} read a base or the "
                         f"user's data, not {args.kind}")
    fields = {"--base": f"{USER_DATA_KINDS.get(args.kind)}.base", "--data": "data.path",
              "--image-root": "data.image_root"}
    return [f"{fields[flag]}={json.dumps(str(value))}" for flag, value in given.items()]
