"""The layering's promises that the import contract (``.importlinter``, run by ``make test``) cannot
see: reading a config or printing one never loads torch or transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "peft")


@pytest.mark.parametrize("code", [
    "import seal.config",
    "import seal.config; seal.config.load()",
    "from seal.cli.main import main; main(['cfg', 'search'])",
    "from seal.cli.main import main; main(['cfg', 'train-vsm'])",
    "from seal.cli.main import main; main(['cfg', 'train-policy'])",
    "import search.engine, search.hit_check.build, search.session",
])
def test_configs_and_the_search_algorithm_import_no_torch(code):
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_seal_cfg_for_ask_is_short_and_has_one_seed():
    out = subprocess.run([sys.executable, "-m", "seal", "cfg", "ask"], capture_output=True, text=True,
                         check=True).stdout
    lines = out.splitlines()
    assert len(lines) < 150
    assert sum(line.strip().startswith("seed:") for line in lines) == 1
