"""``seal cfg``: print the resolved configuration as YAML."""

from __future__ import annotations

import argparse

from seal.cli.common import add_config_args, resolve_config
from seal.config import dump_yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cfg", help="print the resolved config (defaults <- --config files <- --a.b=c overrides)")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(dump_yaml(resolve_config(args)), end="")
    return 0
