"""One config per command: ``COMMANDS`` names the typed config each ``seal`` command resolves.

Each config is composed of the sections that command reads (defined beside the code that reads
them) and is filled by :func:`load`: dataclass defaults <- the search model's search defaults <-
YAML files (in order) <- dotted overrides. Importing this package does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, TypeVar

from seal.agent.config import AskConfig, SearchCommandConfig
from seal.config.root import Config
from seal.core.config import dump_yaml, from_dict, load_config, to_dict
from seal.core.errors import ConfigError
from eval.synth.config import BenchSynthConfig

T = TypeVar("T")

COMMANDS: dict[str, type] = {
    "ask": AskConfig,
    "eval": AskConfig,
    "search": SearchCommandConfig,
    "train": Config,
    "bench-synth": BenchSynthConfig,
}
"""``seal cfg COMMAND`` / each command's config class."""


def command_config(command: str) -> type:
    """The config class of ``command`` (a key of :data:`COMMANDS`)."""
    try:
        return COMMANDS[command]
    except KeyError:
        raise ConfigError(f"no config for command {command!r}; known: {', '.join(COMMANDS)}") from None


def load(files: Iterable[str | Path] = (), overrides: Iterable[str] = (), search_profile: bool | str | Path = True,
         cls: type[T] = AskConfig) -> T:
    """Resolve ``cls`` from YAML files and dotted overrides.

    Args:
        files: YAML files, later ones win.
        overrides: ``section.field=value`` items, winning over every file.
        search_profile: the search model whose search defaults (:mod:`search.profile`: the search
            settings its scores were tuned for) are layered *under* ``files``: a checkpoint
            directory; True (the default) = ``models.vsm_path`` when ``models.localizer`` is ``vsm``;
            False = none.
        cls: the command's config class (:data:`COMMANDS`; default ``seal ask``'s).
    """
    files = list(files)
    overrides = list(overrides)
    cfg = load_config(cls, files, overrides)
    profile = _profile(cfg, search_profile)
    return cfg if profile is None else load_config(cls, [profile, *files], overrides)


def _profile(cfg: object, search_profile: bool | str | Path) -> Path | None:
    from search.profile import profile_path, read_profile
    from seal.core.paths import find_dir

    if search_profile is False or not hasattr(cfg, "search"):
        return None
    if search_profile is True:
        models = getattr(cfg, "models", None)
        if models is None or models.localizer != "vsm":
            return None
        search_profile = find_dir(models.vsm_path)  # a missing model fails where it is loaded
        if search_profile is None:
            return None
    path = profile_path(search_profile)
    if path is not None:
        read_profile(path)  # only a `search:` section may be layered
    return path


__all__ = ["COMMANDS", "AskConfig", "Config", "SearchCommandConfig", "command_config", "dump_yaml", "from_dict",
           "load", "load_config", "to_dict"]
