"""Weight files checked as they load: every damaged checkpoint is one :class:`InputError` naming the file.

- :func:`load_safetensors`: a ``.safetensors`` file as a name -> tensor dict; a truncated or corrupt
  file (``SafetensorError``: ``incomplete metadata``, ``header too large``, ...) and NaN / inf
  weights are errors naming the file (and the first bad tensor).
- :func:`check_finite`: every floating tensor of a state dict holds finite values only.
- :func:`load_torch_bin`: a pickled ``.bin`` through ``torch.load(weights_only=True)``; a file that
  needs more than plain tensors to unpickle is refused, naming the file.
- :func:`load_errors`: around a library's own loader (``transformers`` / ``peft``
  ``from_pretrained``): its safetensors, unpickling, size-mismatch and file errors become one
  InputError naming the file or directory, and its load report is not printed.
- :func:`check_loaded_finite`: a loaded model's weights are finite (the file and tensor are named).

Bottom layer: imports nothing else of ours but :mod:`seal.core.errors`; torch, safetensors and
transformers are imported inside the functions.
"""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from seal.core.errors import InputError

if TYPE_CHECKING:
    import torch

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
"""File endings :func:`weight_files` lists in a checkpoint directory."""


def load_safetensors(path: str | Path, device: str = "cpu", finite: bool = True,
                     what: str = "weights") -> dict[str, "torch.Tensor"]:
    """The tensors of the ``.safetensors`` file ``path`` (on ``device``), checked by :func:`check_finite`
    unless ``finite`` is False; ``what`` names the file's role in messages (``cannot load the {what}``).

    Raises:
        InputError: the file is missing, truncated or corrupt, or holds NaN / infinite weights.
    """
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise InputError("weights file missing (expected a .safetensors file)", p)
    try:
        state = load_file(str(p), device=device)
    except Exception as exc:  # SafetensorError (a Rust exception), OSError, ...
        if not _is_safetensors_error(exc) and not isinstance(exc, (OSError, ValueError)):
            raise
        raise InputError(_corrupt_message(exc, what), p) from None
    if finite:
        check_finite(state, p)
    return state


def safetensors_keys(path: str | Path) -> set[str]:
    """The tensor names in the header of the ``.safetensors`` file ``path`` (the data is not read).

    Raises:
        InputError: the file is missing, truncated or corrupt.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise InputError("weights file missing (expected a .safetensors file)", p)
    try:
        with safe_open(str(p), framework="pt") as f:
            return set(f.keys())
    except Exception as exc:
        if not _is_safetensors_error(exc) and not isinstance(exc, (OSError, ValueError)):
            raise
        raise InputError(_corrupt_message(exc), p) from None


def check_finite(state: Mapping[str, Any], path: str | Path) -> None:
    """Every floating (or complex) tensor of ``state`` is finite.

    Raises:
        InputError: naming ``path`` and the first tensor (in ``state``'s order) with a NaN or an
            infinite value, with how many of its values are bad and the first bad row.
    """
    import torch

    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            raise InputError(_nonfinite_message(name, tensor, bad), path)


def load_torch_bin(path: str | Path, device: str = "cpu") -> dict[str, "torch.Tensor"]:
    """A pickled state dict (``torch.save``) loaded with ``torch.load(weights_only=True)``: plain
    tensors (and containers of them) only, checked by :func:`check_finite`.

    Raises:
        InputError: the file is missing or corrupt, needs other pickled objects (refused: it could
            run code), is not a name -> tensor mapping, or holds NaN / infinite weights.
    """
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError("weights file missing (expected a torch.save .bin file)", p)
    try:
        obj = torch.load(str(p), map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(_refused_message(exc), p) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise InputError(f"expected a torch.save file, found a truncated or corrupt one ({_first_line(exc)})",
                         p) from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = type(obj).__name__ if not isinstance(obj, dict) else \
            next(type(v).__name__ for v in obj.values() if not isinstance(v, torch.Tensor))
        raise InputError(f"expected a mapping of names to tensors, found {found}", p)
    check_finite(obj, p)
    return obj


def weight_files(path: str | Path) -> list[Path]:
    """``path`` itself when it is a file, else the weight files (:data:`WEIGHT_SUFFIXES`) directly in
    the directory ``path``, by name."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        return []
    return sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))


def check_loaded_finite(named_tensors: Iterable[tuple[str, Any]], path: str | Path) -> None:
    """The weights of a model loaded from ``path`` (a file or checkpoint directory) are finite.

    ``named_tensors``: e.g. ``model.state_dict().items()``. On a bad tensor the weight files of
    ``path`` are searched for it, so the message names the file and its tensor; when no file holds
    it (e.g. a value that overflowed in a dtype conversion) it names ``path`` and the model's tensor.

    Raises:
        InputError: a NaN or infinite weight.
    """
    import torch

    for name, tensor in named_tensors:
        if not isinstance(tensor, torch.Tensor) or not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            for f in weight_files(path):
                if f.name.endswith(".safetensors"):
                    load_safetensors(f)  # raises, naming the file and its first bad tensor
            raise InputError(_nonfinite_message(name, tensor, bad) + " after loading", path)


@contextmanager
def load_errors(path: str | Path, what: str = "checkpoint") -> Iterator[None]:
    """Run a library's loader of ``path`` (a weights file or a checkpoint directory) with its errors
    turned into one :class:`InputError` each:

    - a truncated or corrupt safetensors file -> names that file (found by reading the headers);
    - a ``.bin`` that ``torch.load(weights_only=True)`` refuses -> names the file, says why;
    - ``transformers``' size-mismatch ``RuntimeError`` -> names ``path`` and the first parameter;
    - other ``OSError`` / ``ValueError`` / ``RuntimeError`` -> names ``path`` and the first line.

    ``transformers``' logging is raised to errors only inside (its load report of missing,
    unexpected and mis-sized tensors would print a long table before the error).
    """
    import pickle

    p = Path(path)
    with _quiet_transformers():
        try:
            yield
        except InputError:
            raise
        except pickle.UnpicklingError as exc:
            bins = [f for f in weight_files(p) if not f.name.endswith(".safetensors")]
            raise InputError(_refused_message(exc), bins[0] if bins else p) from None
        except Exception as exc:
            if _is_safetensors_error(exc):
                raise InputError(_corrupt_message(exc, what), _first_corrupt_safetensors(p) or p) from None
            if not isinstance(exc, (OSError, ValueError, RuntimeError, EOFError)):
                raise
            text = " ".join(str(exc).split())
            mismatch = re.search(r"size mismatch for ([\w.]+): copying a param with shape (torch\.Size\(\[[^\]]*\]\)) "
                                 r"from checkpoint, the shape in current model is (torch\.Size\(\[[^\]]*\]\))", text)
            if mismatch:
                name, ckpt, model = mismatch.groups()
                raise InputError(f"the config does not match the weights: {name} is {_shape(ckpt)} in the weights, "
                                 f"{_shape(model)} per the config", p) from None
            if "ignore_mismatched_sizes" in text:
                raise InputError("the config does not match the weights (tensor sizes differ)", p) from None
            raise InputError(f"cannot load the {what} ({_first_line(exc)})", p) from None


def mismatch_message(mismatched: Iterable[Any]) -> str:
    """One sentence about ``transformers``' ``mismatched_keys`` (``(name, shape in the weights,
    shape in the model)`` tuples, or names): the first one and how many."""
    items = sorted(mismatched, key=lambda m: str(m[0] if isinstance(m, (tuple, list)) else m))
    if not items:
        return "no mismatched parameters"
    first = items[0]
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    if isinstance(first, (tuple, list)) and len(first) >= 3:
        return (f"config.json does not match the weights: {first[0]} is {_shape(first[1])} in the weights, "
                f"{_shape(first[2])} per config.json{more}")
    name = first[0] if isinstance(first, (tuple, list)) else first
    return f"config.json does not match the weights: {name} differs in size{more}"


# ---- messages ----------------------------------------------------------------------------------
def _is_safetensors_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "SafetensorError" or type(exc).__module__.startswith("safetensors")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text[:300]


def _corrupt_message(exc: BaseException, what: str = "weights") -> str:
    return (f"cannot load the {what}: expected a complete safetensors file, found a truncated or corrupt one "
            f"({_first_line(exc)})")


def _refused_message(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    detail = m.group(1).strip() if m else ""
    detail = re.split(r" was not an allowed global| Please use|\. Check", detail)[0].strip().rstrip(".")
    return ("refused to load the weights: expected a plain tensor file, found other pickled objects (torch.load with "
            "weights_only=True: " + (detail or "an object it does not allow")
            + "); re-save it as .safetensors or a dict of tensors")


def _nonfinite_message(name: str, tensor: "torch.Tensor", bad: "torch.Tensor") -> str:
    n_bad, n = int(bad.sum()), tensor.numel()
    where = ""
    if tensor.ndim >= 2:
        rows = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero()
        where = f", first in row {int(rows[0])} of {tensor.shape[0]}"
    kinds = " and ".join(k for k, hit in (("NaN", bool(tensor.isnan().any())),
                                          ("infinite", bool(tensor.isinf().any()))) if hit)
    return (f"expected finite weights, found {n_bad} of {n} values {kinds or 'non-finite'} in tensor {name!r}"
            f"{where}")


def _shape(value: Any) -> str:
    text = str(value)
    m = re.search(r"\[([^\]]*)\]", text)
    if m:
        return "[" + ", ".join(x.strip() for x in m.group(1).split(",") if x.strip()) + "]"
    try:
        return "[" + ", ".join(str(int(x)) for x in value) + "]"
    except (TypeError, ValueError):
        return text


def _first_corrupt_safetensors(path: Path) -> Path | None:
    """The first safetensors file under ``path`` (itself, or directly in it) whose header does not read."""
    for f in weight_files(path):
        if f.name.endswith(".safetensors"):
            try:
                safetensors_keys(f)
            except InputError:
                return f
    return None


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """``transformers`` logs errors only inside (when it is imported at all)."""
    if "transformers" not in sys.modules:
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
