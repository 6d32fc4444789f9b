"""Helpers of the CLI tests (no tests here): run ``seal`` in-process and read its JSON line."""

import json

from seal.cli.main import main


def run_cli(argv, capsys):
    """``(exit code, stdout, stderr)`` of ``seal *argv`` run in this process."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def last_json(out: str) -> dict:
    """The JSON object on the last line of ``out``."""
    return json.loads(out.strip().splitlines()[-1])
