"""A search model's profile: the search settings its scores were tuned for (``search.yaml``).

A trained localizer's scores have their own scale. The reference's stop threshold (0.5) suits a
model whose confident boxes score above it; a model whose target boxes mostly score 0.3-0.5 (the
one-run tiny VSM, ``configs/train/vsm_fast.yaml``) needs a lower one, chosen on the validation split.
Such settings belong to the checkpoint, the way a detector ships its confidence threshold: its
recipe writes them (``vsm_train.search_profile``) beside the weights, as

.. code-block:: yaml

    search:
      confidence_high: 0.3
      confidence_low: 0.15

and :func:`seal.config.load` reads the file as the *first* config layer, under every config file
and override, so a user's own ``--search.confidence_high=...`` still wins. Only the ``search``
section may appear: a profile tunes the search to its model, nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from seal.core.errors import ConfigError

PROFILE = "search.yaml"
"""The file name of a search model's profile inside its checkpoint directory."""


def profile_path(model_dir: str | Path | None) -> Path | None:
    """``model_dir/search.yaml`` when the directory holds one (None otherwise, or for None)."""
    if model_dir is None:
        return None
    path = Path(model_dir) / PROFILE
    return path if path.is_file() else None


def read_profile(path: str | Path) -> dict[str, Any]:
    """The profile's ``search`` mapping (its values are checked when the config layers it).

    Raises:
        ConfigError: unreadable YAML, not a mapping, or a section other than ``search``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable search profile ({e})") from e
    data = {} if data is None else data
    if not isinstance(data, dict) or set(data) - {"search"}:
        raise ConfigError(f"{path}: a search profile holds one mapping, `search:`; found "
                          f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    section = data.get("search") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: search: expected a mapping, found {section!r}")
    return section


RECIPE_NOTE = ("Search settings this model's scores were tuned for (vsm_train.search_profile of its recipe);\n"
               "layered under every config file and override when it searches (search/profile.py).")
"""The comment a recipe writes at the top of the profile."""


def write_profile(model_dir: str | Path, settings: dict[str, Any], note: str = RECIPE_NOTE) -> Path:
    """Write ``settings`` (``search`` fields) as ``model_dir/search.yaml``, ``note`` as its comment."""
    path = Path(model_dir) / PROFILE
    comment = "".join(f"# {line}\n" for line in note.splitlines())
    path.write_text(comment + yaml.safe_dump({"search": dict(settings)}, sort_keys=False), encoding="utf-8")
    return path
