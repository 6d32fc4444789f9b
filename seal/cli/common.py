"""Helpers shared by the sub-commands: config options, run records, JSON output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from seal.config import AskConfig, load



def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` (repeatable, later files win); dotted overrides are collected by main."""
    parser.add_argument("--config", action="append", default=[], metavar="YAML",
                        help="config file; repeat to layer (later wins). Override fields with --section.field=value")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--dtype``, ``--device-map``: where and in which precision the models run
    (shorthands of ``models.device``, ``models.dtype``, ``models.device_map``)."""
    parser.add_argument("--device", metavar="DEV", help="torch device of the models, e.g. cpu, cuda, cuda:1 "
                                                        "(models.device)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="weights dtype (models.dtype)")
    parser.add_argument("--device-map", metavar="MAP", help="transformers device_map for a VQA model that does not "
                                                            "fit one device, e.g. auto (models.device_map)")


def model_overrides(args: argparse.Namespace) -> list[str]:
    """The :func:`add_model_args` flags given, as dotted overrides."""
    import json

    flags = (("device", "models.device"), ("dtype", "models.dtype"), ("device_map", "models.device_map"))
    return [f"{key}={json.dumps(str(getattr(args, name)))}" for name, key in flags
            if getattr(args, name, None) is not None]


def resolve_config(args: argparse.Namespace, cls: type = AskConfig, search_profile: bool | str | Path = True) -> Any:
    """The command's config ``cls`` from ``args.config`` files and ``args.overrides`` (then the
    :func:`add_model_args` flags) over the search model's profile (:func:`seal.config.load`;
    ``search_profile``: that model's directory, True = ``models.vsm_path``'s)."""
    overrides = list(getattr(args, "overrides", []) or []) + model_overrides(args)
    return load(getattr(args, "config", []) or [], overrides, search_profile, cls)


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None, cls: type = AskConfig,
                      model_arg: str | None = None, profile: bool = True) -> tuple[argparse.Namespace, Any]:
    """``(args, config)`` of a script with :func:`add_config_args`: unknown ``--section.field=value``
    arguments become ``args.overrides``, layered over ``args.config``, over the search profile of the
    model the argument ``model_arg`` names (None: ``models.vsm_path``'s; see :func:`seal.config.load`);
    ``profile=False``: none (a script that searches with another localizer).

    Raises:
        ConfigError: a config file or an override is invalid.
    """
    from seal.cli.main import dotted_overrides

    args, extra = parser.parse_known_args(argv)
    args.overrides = dotted_overrides(extra, parser)
    if profile and model_arg is not None and getattr(args, model_arg) is not None:
        return args, resolve_config(args, cls, getattr(args, model_arg))
    return args, resolve_config(args, cls, profile)


def print_json_line(obj: Any) -> None:
    """The machine-readable result: one JSON object as the last stdout line."""
    print(json.dumps(obj, separators=(",", ":"), default=_json_default), flush=True)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
