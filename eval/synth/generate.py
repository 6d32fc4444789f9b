"""Write a SynthVStar benchmark folder in the V*Bench layout (see api.md, "SynthVStar output").

``DIR/<category>/<stem>.jpg`` + ``<stem>.json`` (V*Bench fields + ``tag``), ``DIR/test_questions.jsonl``
(letter format, short options shuffled), ``DIR/categories.json`` and the training sidecars
``DIR/synth_annotations/<category>/<stem>.json``. Stems are ``synth_<split>_<index:05d>``. The output is
a pure function of the config: the same config gives byte-identical JSON and identical images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eval.synth.config import SynthConfig
from eval.synth.sample import SynthSample, letter_rng, render_sample, sample_plan, sample_rng
from seal.core.errors import InputError

CATEGORIES = ("direct_attributes", "relative_position", "coarse_attributes", "text_only")
"""Every folder a sample can go to, in the order ``categories.json`` lists them."""
SIDECAR_DIR = "synth_annotations"
LETTERS = "ABCDEFGH"
INSTRUCTION = "Answer with the option's letter from the given choices directly."
_OUTPUT_FILES = ("test_questions.jsonl", "categories.json")


def generate_benchmark(cfg: SynthConfig, out_dir: str | Path, overwrite: bool = False) -> dict[str, int]:
    """Render ``cfg.n`` samples of ``cfg.split`` into ``out_dir``.

    Args:
        cfg: what to generate (``n``, ``seed``, ``split``, ``suite``, sizes, ...).
        out_dir: created if missing. A folder that already holds a benchmark is refused unless
            ``overwrite``, which first deletes the previous benchmark's files (only those).

    Returns:
        Sample count per category folder, in :data:`CATEGORIES` order (folders without samples left out).

    Raises:
        InputError: ``out_dir`` is a file, or holds a benchmark and ``overwrite`` is False.
    """
    out = prepare_output_dir(out_dir, overwrite)
    counts = {c: 0 for c in CATEGORIES}
    lines: list[str] = []
    for index in range(cfg.n):
        tag, kind = sample_plan(cfg, index)
        sample = render_sample(sample_rng(cfg.seed, cfg.split, index), cfg, tag=tag, kind=kind)
        rel = write_sample(out, sample, f"synth_{cfg.split}_{index:05d}", cfg.jpeg_quality)
        lines.append(json.dumps(letter_record(sample, rel, str(index), letter_rng(cfg, index))))
        counts[sample.category] += 1
    (out / "test_questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    used = [c for c in CATEGORIES if counts[c]]
    _write_json(out / "categories.json", {"categories": used})
    return {c: counts[c] for c in used}


def write_sample(out: Path, sample: SynthSample, stem: str, jpeg_quality: int = 90) -> str:
    """Write the image, its V*Bench JSON and its sidecar; return the image path relative to ``out``."""
    folder = out / sample.category
    folder.mkdir(parents=True, exist_ok=True)
    sample.image.save(folder / f"{stem}.jpg", "JPEG", quality=jpeg_quality)
    _write_json(folder / f"{stem}.json", sample.vstar_json())
    rel = f"{sample.category}/{stem}.jpg"
    side = out / SIDECAR_DIR / sample.category
    side.mkdir(parents=True, exist_ok=True)
    _write_json(side / f"{stem}.json", sample.sidecar_json(rel))
    return rel


def letter_record(sample: SynthSample, image_rel: str, question_id: str, rng: np.random.Generator) -> dict:
    """One ``test_questions.jsonl`` line: short options shuffled by ``rng`` and lettered.

    Keys in V*Bench order: ``image``, ``text``, ``category``, ``question_id`` (str), ``label`` (letter).
    """
    shorts = sample.question.short_options
    order = [int(i) for i in rng.permutation(len(shorts))]
    lettered = [f"({LETTERS[k]}) {shorts[i]}" for k, i in enumerate(order)]
    text = "\n".join([sample.question.question, *lettered, INSTRUCTION])
    return {"image": image_rel, "text": text, "category": sample.category, "question_id": question_id,
            "label": LETTERS[order.index(0)]}


def prepare_output_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """Make ``out_dir`` ready: refuse a file or (without ``overwrite``) a previous benchmark, else
    remove that benchmark's own files (``synth_*`` samples, sidecars, question lists)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("expected an output directory, found an existing file", out)
    previous = [out / f for f in _OUTPUT_FILES if (out / f).exists()]
    previous += [out / c for c in (*CATEGORIES, SIDECAR_DIR) if (out / c).exists()]
    if previous and not overwrite:
        raise InputError(f"already holds a benchmark ({previous[0].name}); choose a new --out or pass --overwrite", out)
    for path in previous:
        if path.is_file():
            path.unlink()
            continue
        for sub in [*(path / c for c in CATEGORIES), path]:
            if sub.is_dir():
                for f in sub.glob("synth_*.*"):
                    f.unlink()
                if not any(sub.iterdir()):
                    sub.rmdir()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj) + "\n", encoding="utf-8")
