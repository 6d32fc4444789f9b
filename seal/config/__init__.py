"""One config per command: ``COMMANDS`` names the typed config each ``seal`` command resolves.

Each config is composed of the sections that command reads (defined beside the code that reads
them) and is filled by :func:`load`: dataclass defaults <- the search model's search defaults <-
YAML files (in order) <- dotted overrides. Importing this package does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, TypeVar

import importlib

from seal.agent.config import AskConfig, SearchCommandConfig
from seal.core.config import dump_yaml, from_dict, load_config, to_dict
from seal.core.errors import ConfigError

T = TypeVar("T")

COMMANDS: dict[str, str] = {
    "ask": "seal.agent.config:AskConfig",
    "eval": "seal.agent.config:AskConfig",
    "search": "seal.agent.config:SearchCommandConfig",
    "train-vsm": "training.vsm_config:TrainVSMConfig",
    "train-vqa": "training.vqa_config:TrainVQAConfig",
    "train-policy": "training.policy_config:TrainPolicyConfig",
    "train-crop-matcher": "training.crop_matcher_config:TrainCropMatcherConfig",
    "train-merger": "training.merger_config:TrainMergerConfig",
    "train-pruners": "training.pruner_config:TrainPrunersConfig",
    "bench-synth": "eval.synth.config:BenchSynthConfig",
}
"""``seal cfg COMMAND`` / each command's config class, as ``module:Class`` (imported on demand, so
one command's config never imports another's)."""


def command_config(command: str) -> type:
    """The config class of ``command`` (a key of :data:`COMMANDS`)."""
    try:
        module, name = COMMANDS[command].split(":")
    except KeyError:
        raise ConfigError(f"no config for command {command!r}; known: {', '.join(COMMANDS)}") from None
    return getattr(importlib.import_module(module), name)


def load(files: Iterable[str | Path] = (), overrides: Iterable[str] = (), search_profile: bool | str | Path = True,
         cls: type[T] = AskConfig) -> T:
    """Resolve ``cls`` from YAML files and dotted overrides.

    Args:
        files: YAML files, later ones win.
        overrides: ``section.field=value`` items, winning over every file.
        search_profile: the search model whose search defaults (its manifest's ``search_defaults``:
            the search settings its scores were tuned for, :func:`profile_base`) are layered *under*
            ``files``: a
            checkpoint directory; True (the default) = ``models.vsm_path`` when ``models.localizer``
            is ``vsm``; False = none.
        cls: the command's config class (:data:`COMMANDS`; default ``seal ask``'s).
    """
    files = list(files)
    overrides = list(overrides)
    cfg = load_config(cls, files, overrides)
    defaults = _search_defaults(cfg, search_profile)
    return cfg if defaults is None else load_config(cls, files, overrides, base=profile_base(defaults, cfg))


def profile_base(defaults: dict, cfg: object) -> dict:
    """A search profile (a manifest's ``search_defaults``: ``search`` fields, and under the key
    ``hit_check`` the hit-check fields the model was tuned with) as config sections to layer under
    the user's; ``hit_check`` only for a config that has that section."""
    base = {"search": {k: v for k, v in defaults.items() if k != "hit_check"}}
    if "hit_check" in defaults and hasattr(cfg, "hit_check"):
        base["hit_check"] = dict(defaults["hit_check"])
    return base


def _search_defaults(cfg: object, search_profile: bool | str | Path) -> dict | None:
    """The search defaults of the search model ``search_profile`` names (see :func:`load`)."""
    from search.vsm.plain_base import plain_base_message
    from seal.core.errors import InputError
    from seal.core.manifest import read_manifest
    from seal.core.paths import resolve_dir

    if search_profile is False or not hasattr(cfg, "search"):
        return None
    if search_profile is True:
        models = getattr(cfg, "models", None)
        if models is None or models.localizer != "vsm":
            return None
        search_profile = resolve_dir(models.vsm_path, "models.vsm_path")
    message = plain_base_message(search_profile)
    if message:
        raise InputError(message, search_profile)
    return read_manifest(search_profile, "vsm").search_defaults or None


__all__ = ["COMMANDS", "AskConfig", "SearchCommandConfig", "command_config", "dump_yaml", "from_dict", "load",
           "load_config", "to_dict"]
