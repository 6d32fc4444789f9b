"""``seal`` command line: one sub-command per module in :mod:`seal.cli`.

Each ``seal.cli.cmd_<name>`` module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (``args -> exit code``). Errors the user can fix (:class:`InputError`) print one line
on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from seal.core.runs import set_command_line
from seal.core.errors import InputError



def command_modules() -> list[str]:
    """Every ``seal.cli.cmd_*`` module, in name order."""
    import seal.cli

    return sorted(m.name for m in pkgutil.iter_modules(seal.cli.__path__) if m.name.startswith("cmd_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seal",
                                     description="Agentic visual search (SEAL / V*) with a value-of-vision policy.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in command_modules():
        importlib.import_module(f"seal.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_library_warnings()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    set_command_line(["seal", *(sys.argv[1:] if argv is None else argv)])
    try:
        args.overrides = dotted_overrides(extra, parser)
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"seal {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seal {args.command}: interrupted", file=sys.stderr)
        return 130


def quiet_library_warnings() -> None:
    """Silence library warnings the user cannot act on (also called by ``seal eval``'s spawned workers)."""
    # peft asks transformers a deprecated question on every adapter load
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def dotted_overrides(extra: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Unknown ``--section.field=value`` / ``--section.field value`` arguments, and top-level fields
    written ``--field=value`` (e.g. ``--seed=1``), become overrides (the config names unknown keys)."""
    out: list[str] = []
    i = 0
    while i < len(extra):
        item = extra[i]
        key = item[2:].split("=", 1)[0]
        top_level = "=" in item and key.isidentifier()
        if not item.startswith("--") or not ("." in key or top_level):
            parser.error(f"unrecognized argument: {item}")
        if "=" in item:
            out.append(item[2:])
        elif i + 1 < len(extra):
            out.append(f"{item[2:]}={extra[i + 1]}")
            i += 1
        else:
            parser.error(f"override {item} needs a value")
        i += 1
    return out


if __name__ == "__main__":
    sys.exit(main())
