"""``seal cfg COMMAND``: print the resolved config of one command as YAML."""

from __future__ import annotations

import argparse

from seal.cli.common import add_config_args, resolve_config
from seal.config import COMMANDS, command_config, dump_yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cfg",
                       help="print a command's resolved config (defaults <- --config files <- --a.b=c overrides)")
    p.add_argument("of", metavar="COMMAND", nargs="?", default="ask", choices=sorted(COMMANDS),
                   help="the command whose config is printed (default: ask)")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(dump_yaml(resolve_config(args, command_config(args.of))), end="")
    return 0
