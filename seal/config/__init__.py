"""Typed, layered configuration (see :mod:`seal.config.loader`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from seal.config.loader import dump_yaml, from_dict, load_config, to_dict
from seal.config.root import Config, ImageConfig


def load(files: Iterable[str | Path] = (), overrides: Iterable[str] = ()) -> Config:
    """Resolve the project's :class:`Config` from YAML files and dotted overrides."""
    return load_config(Config, files, overrides)


__all__ = ["Config", "ImageConfig", "dump_yaml", "from_dict", "load", "load_config", "to_dict"]
