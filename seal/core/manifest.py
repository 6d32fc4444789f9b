"""Self-describing checkpoints: one ``manifest.json`` per checkpoint directory, read strictly.

A manifest says what the directory holds and what it was made against::

    {
      "format": "seal-checkpoint",
      "format_version": 1,
      "kind": "vqa" | "vsm" | "crop_matcher" | "policy_head" | "merger" | "pruners",
      "config": {...},                   # the model's own config (not the whole command tree)
      "files": {"model.safetensors": "sha256:...", ...},   # every file the model needs
      "fingerprint": "sha256:...",       # of the files above: the checkpoint's identity
      "search_defaults": {...},          # vsm: the search settings its scores were tuned for
      "second_stage": {"kind": "crop_matcher", "path": "crop_matcher", "fingerprint": "sha256:..."},
      "trained_against": {"vqa": {"path": "checkpoints/vqa_tiny", "fingerprint": "sha256:..."}},
      "recipe": {"command": [...], "git_revision": "..."}
    }

:func:`read_manifest` checks the format, the kind and that every listed file and companion
directory exists; anything missing or of another kind is an :class:`InputError` naming both the
checkpoint and the file. :func:`fingerprint` identifies any model directory, with or without a
manifest (a plain transformers checkpoint is fingerprinted from its weight and config files), so a
companion trained against one model refuses another with one line.

Hashes: files up to :data:`FULL_HASH_BYTES` are hashed whole; larger ones (multi-GB weights) by
their size and their first and last :data:`EDGE_BYTES`, so fingerprinting a 7B checkpoint reads a
few MB, not 15 GB.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from seal.core.errors import InputError

MANIFEST = "manifest.json"
FORMAT = "seal-checkpoint"
FORMAT_VERSION = 1
KINDS = ("vqa", "vsm", "crop_matcher", "policy_head", "merger", "pruners")
FULL_HASH_BYTES = 256 * 2**20
EDGE_BYTES = 4 * 2**20
_MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt")
"""Files of a plain (manifest-less) model directory that make up its fingerprint."""
_NOT_MODEL = ("train_log.jsonl", "run.json", "metrics.json", "train_summary.json", MANIFEST)


@dataclass
class Manifest:
    """A parsed ``manifest.json`` (see the module docstring for the fields)."""

    kind: str
    config: dict[str, Any]
    files: dict[str, str]
    fingerprint: str
    search_defaults: dict[str, Any] | None = None
    second_stage: dict[str, Any] | None = None
    trained_against: dict[str, dict[str, str]] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    """The checkpoint directory the manifest was read from."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
                               "config": self.config, "files": self.files, "fingerprint": self.fingerprint}
        for key in ("search_defaults", "second_stage"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["trained_against"] = self.trained_against
        out["recipe"] = self.recipe
        return out


def file_hash(path: Path) -> str:
    """``sha256:<hex>`` of a file (whole up to :data:`FULL_HASH_BYTES`, else size + both ends)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
        else:
            h.update(f"size={size}".encode())
            h.update(f.read(EDGE_BYTES))
            f.seek(size - EDGE_BYTES)
            h.update(f.read(EDGE_BYTES))
    return "sha256:" + h.hexdigest()


def files_fingerprint(hashes: dict[str, str]) -> str:
    """The identity of a set of files: the hash of their sorted ``name hash`` lines."""
    text = "\n".join(f"{name} {digest}" for name, digest in sorted(hashes.items()))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_files(root: Path, names: Iterable[str]) -> dict[str, str]:
    """``{relative name: file_hash}`` of ``names`` under ``root`` (each must exist)."""
    out = {}
    for name in sorted(names):
        p = root / name
        if not p.is_file():
            raise InputError(f"expected the file {name} in the checkpoint, found none", p)
        out[name] = file_hash(p)
    return out


def model_files(root: Path) -> list[str]:
    """The files that make up a (flat, transformers-style) model directory: weights, configs and
    tokenizer files at its top level; not logs, run records, metrics or docs."""
    return [p.name for p in sorted(root.iterdir())
            if p.is_file() and p.suffix in _MODEL_SUFFIXES and p.name not in _NOT_MODEL]


def fingerprint(path: str | Path) -> str:
    """The identity of the model in ``path``: its manifest's fingerprint, or for a plain model
    directory (no manifest) the fingerprint of its model files."""
    root = Path(path)
    if (root / MANIFEST).is_file():
        return read_manifest(root).fingerprint
    names = model_files(root)
    if not names:
        raise InputError("expected a model directory (weights and config files), found none", root)
    return files_fingerprint(hash_files(root, names))


def write_manifest(path: str | Path, kind: str, config: dict[str, Any], files: Iterable[str],
                   search_defaults: dict[str, Any] | None = None, second_stage: str | None = None,
                   trained_against: dict[str, str | Path] | None = None,
                   recipe: dict[str, Any] | None = None) -> Manifest:
    """Hash ``files`` (relative to ``path``), fingerprint the companions and write ``manifest.json``.

    Args:
        path: the checkpoint directory (its files already written).
        kind: one of :data:`KINDS`.
        config: the model's own config (JSON-ready).
        files: every file the model needs, relative to ``path``.
        search_defaults: ``vsm``: the ``search`` settings its scores were tuned for.
        second_stage: a subdirectory holding the checkpoint's second stage (its own manifest).
        trained_against: role -> the checkpoint directory this one was trained against.
        recipe: how it was made (command, git revision, ...).
    """
    root = Path(path)
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, found {kind!r}")
    hashes = hash_files(root, files)
    stage = None
    if second_stage is not None:
        inner = read_manifest(root / second_stage)
        stage = {"kind": inner.kind, "path": second_stage, "fingerprint": inner.fingerprint}
    against = {role: {"path": str(p), "fingerprint": fingerprint(p)} for role, p in (trained_against or {}).items()}
    ident = files_fingerprint({**hashes, **({"second_stage": stage["fingerprint"]} if stage else {})})
    manifest = Manifest(kind, config, hashes, ident, search_defaults, stage, against, recipe or {}, root)
    (root / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(path: str | Path, kind: str | None = None) -> Manifest:
    """The manifest of the checkpoint at ``path``, checked strictly.

    Raises:
        InputError: no manifest, malformed JSON, another format / version / kind, a listed file or
            the second stage missing. The message names the checkpoint and the file.
    """
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise InputError("expected a checkpoint directory, found " + ("a file" if root.exists() else "nothing"), root)
    if not mpath.is_file():
        what = f"a {kind} checkpoint" if kind else "a seal checkpoint"
        raise InputError(f"expected {what} with {MANIFEST}, found no {MANIFEST}", root)
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"malformed manifest ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                         mpath) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"expected format {FORMAT!r}, "
                         f"found {data.get('format') if isinstance(data, dict) else data!r}",
                         mpath)
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(f"expected format_version {FORMAT_VERSION}, found {data.get('format_version')!r}", mpath)
    found_kind = data.get("kind")
    if kind is not None and found_kind != kind:
        raise InputError(f"expected a {kind} checkpoint, found a {found_kind} checkpoint", mpath)
    for key, typ in (("config", dict), ("files", dict), ("fingerprint", str), ("trained_against", dict)):
        if not isinstance(data.get(key), typ):
            raise InputError(f"{key}: expected a {typ.__name__}, found {data.get(key)!r}", mpath)
    for name in data["files"]:
        if not (root / name).is_file():
            raise InputError(f"missing file {name} listed in {MANIFEST}; restore it or re-export the checkpoint",
                             root / name)
    stage = data.get("second_stage")
    if stage is not None:
        inner = root / str(stage.get("path", ""))
        found = read_manifest(inner, stage.get("kind"))
        if found.fingerprint != stage.get("fingerprint"):
            raise InputError(f"second stage {inner} is not the one this checkpoint was made with (fingerprint "
                             f"{found.fingerprint[:19]}, expected {str(stage.get('fingerprint'))[:19]})", mpath)
    return Manifest(found_kind, data["config"], data["files"], data["fingerprint"], data.get("search_defaults"),
                    stage, data["trained_against"], data.get("recipe") or {}, root)


def check_trained_against(manifest: Manifest, role: str, model_dir: str | Path, how_to_fix: str) -> None:
    """Raise unless ``model_dir`` is the ``role`` model ``manifest``'s checkpoint was trained against.

    Raises:
        InputError: one line naming both checkpoints and ``how_to_fix``.
    """
    against = manifest.trained_against.get(role)
    if against is None:
        return
    found = fingerprint(model_dir)
    if found != against["fingerprint"]:
        raise InputError(f"{manifest.path} was trained against the {role} model {against['path']} "
                         f"({against['fingerprint'][:19]}), not {model_dir} ({found[:19]}); {how_to_fix}")
