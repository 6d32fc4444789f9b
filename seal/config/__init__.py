"""Typed, layered configuration (see :mod:`seal.config.loader`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from seal.config.loader import dump_yaml, from_dict, load_config, to_dict
from seal.config.root import Config, ImageConfig


def load(files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
         search_profile: bool | str | Path = True) -> Config:
    """Resolve the project's :class:`Config` from YAML files and dotted overrides.

    Args:
        files: YAML files, later ones win.
        overrides: ``section.field=value`` items, winning over every file.
        search_profile: the search model whose ``search.yaml`` (:mod:`search.profile`: the search
            settings its scores were tuned for) is layered *under* ``files``: a checkpoint
            directory; True (the default) = ``agent.vsm_path`` when ``agent.localizer`` is ``vsm``;
            False = none. A directory without the file adds nothing.
    """
    files = list(files)
    overrides = list(overrides)
    cfg = load_config(Config, files, overrides)
    profile = _profile(cfg, search_profile)
    return cfg if profile is None else load_config(Config, [profile, *files], overrides)


def _profile(cfg: Config, search_profile: bool | str | Path) -> Path | None:
    from search.profile import profile_path, read_profile

    if search_profile is False:
        return None
    if search_profile is True:
        if cfg.agent.localizer != "vsm":
            return None
        from seal.agent.config import find_dir

        search_profile = find_dir(cfg.agent.vsm_path)  # a missing model fails where it is loaded
    path = profile_path(search_profile)
    if path is not None:
        read_profile(path)  # only a `search:` section may be layered
    return path


__all__ = ["Config", "ImageConfig", "dump_yaml", "from_dict", "load", "load_config", "to_dict"]
