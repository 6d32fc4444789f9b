"""Which VQA LLM checks the search's hits, and how it must be asked.

A model directory may hold a ``verifier.yaml`` (:data:`PROFILE`), the way a checkpoint carries
its processor's configuration:

- ``model_path``: the hit checker to use while this model answers (a directory relative to this
  one). The shipped ``checkpoints/vqa_tiny`` names ``checkpoints/vqa_check_tiny``.
- ``crop_scale``, ``min_context_px``, ``kinds``, ``noun_kinds``: how this model must be asked when
  it checks: the crops and the attribute kinds it was trained on.

The ``verifier`` section's values win; its nulls are filled from the files, then from the built-in
defaults (:class:`seal.vqa.verifier.VerifierConfig`). A user's own LLaVA directory holds no such
file: it answers and checks itself, with the answer layout's crops, as before there were profiles.

>>> plan = plan_checker(load_config())            # doctest: +SKIP
>>> plan.path, plan.source, plan.config.checked_kinds  # doctest: +SKIP
(PosixPath('checkpoints/vqa_check_tiny'), 'checkpoints/vqa_tiny/verifier.yaml', ['color', 'pattern', 'shape'])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from seal.errors import ConfigError, InputError
from seal.vqa.verifier import VerifierConfig

if TYPE_CHECKING:
    from seal.config import Config

PROFILE = "verifier.yaml"
"""The file name of a model directory's checker profile."""

ASKING_KEYS = ("crop_scale", "min_context_px", "kinds", "noun_kinds")
"""The profile keys that say how the model in that directory is asked when it checks."""


@dataclass(frozen=True)
class CheckerPlan:
    """The outcome of :func:`plan_checker`."""

    path: Path | None
    """The checking VQA LLM's directory; None = none exists (the hits go unchecked by a VQA LLM)."""
    separate: bool
    """Whether it is another model than the answering one (``agent.vqa_path``): loaded on its own."""
    config: VerifierConfig
    """The ``verifier`` section with its nulls filled from the checker's profile."""
    source: str
    """Where ``path`` came from: ``--verifier-model``, ``verifier.model_path``, the answering model's
    profile (its path) or ``agent.vqa_path``."""


def read_profile(model_dir: Path) -> dict[str, Any]:
    """``model_dir/verifier.yaml`` as a dict ({} when absent).

    Raises:
        ConfigError: not a mapping, unknown keys, or a ``model_path`` that is not a string.
    """
    path = model_dir / PROFILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable checker profile ({e})") from e
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, found {type(data).__name__}")
    unknown = sorted(set(data) - {"model_path", *ASKING_KEYS})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown} (known: model_path, {', '.join(ASKING_KEYS)})")
    if "model_path" in data and not (isinstance(data["model_path"], str) and data["model_path"].strip()):
        raise ConfigError(f"{path}: model_path: expected a directory relative to {model_dir}, found {data['model_path']!r}")
    return data


def plan_checker(cfg: "Config", model_dir: str | Path | None = None) -> CheckerPlan:
    """Which model checks the hits and with which settings.

    Order: ``model_dir`` (``seal search --verifier-model``), ``verifier.model_path``, the checker
    the answering model's profile names, the answering model itself. The first three must exist;
    a missing answering model gives ``path=None`` (callers that need it load it first and fail there).

    Raises:
        InputError: a named checker directory does not exist.
        ConfigError: a malformed profile, or profile values the ``verifier`` section rejects.
    """
    from seal.agent.config import find_dir, resolve_dir

    answering = find_dir(cfg.agent.vqa_path)
    if model_dir:
        path, source = resolve_dir(model_dir, "verifier-model"), "--verifier-model"
    elif cfg.verifier.model_path:
        path, source = resolve_dir(cfg.verifier.model_path, "verifier.model_path"), "verifier.model_path"
    elif answering is not None and "model_path" in read_profile(answering):
        named = Path(os.path.normpath(answering / read_profile(answering)["model_path"]))
        source = str(answering / PROFILE)
        if not named.is_dir():
            raise InputError(f"{source}: model_path {named} is not a directory; restore it or set verifier.model_path")
        path = named
    else:
        path, source = answering, "agent.vqa_path"
    separate = path is not None and (answering is None or path.resolve() != answering.resolve())
    return CheckerPlan(path, separate, asking_config(cfg.verifier, path), source)


def asking_config(vcfg: VerifierConfig, path: Path | None) -> VerifierConfig:
    """``vcfg`` with its unset asking fields (:data:`ASKING_KEYS`) taken from the profile of the
    checker at ``path`` (validated again)."""
    if path is None:
        return vcfg
    profile = read_profile(path)
    fill = {k: profile[k] for k in ASKING_KEYS if k in profile and getattr(vcfg, k) is None}
    if not fill:
        return vcfg
    try:
        return replace(vcfg, **fill)
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{path / PROFILE}: {e}") from e
