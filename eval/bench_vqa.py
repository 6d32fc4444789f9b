"""``seal bench vqa``: the VQA LLM on a held-out SynthVStar (mixed suite, test split) benchmark, with
ground-truth crops and without.

The data folder is one written by ``seal bench synth --suite mixed --split test``; when it does not
exist yet it is generated first (``n`` samples, ``seed``). Every sample is read from disk as the
benchmark ships it (JPEG + V*Bench JSON + ``test_questions.jsonl``). Per sample:

- ``crops_likelihood``: global view + ground-truth crops of every target (the VWM layout of
  inference); :meth:`VQAModel.score_options` over the full-sentence options, right when option 0
  (the correct one) scores highest (the official V*Bench protocol);
- ``crops_letter``: same view, :meth:`VQAModel.choose_letter` over the shuffled short options of
  ``test_questions.jsonl``, right when it picks the labelled letter;
- ``global_likelihood``: global view only, likelihood protocol (no crops; for reference);
- ``refusal_global``: greedy :meth:`VQAModel.answer` on the global view is the "missing objects"
  refusal; ``refusal_targets_ok``: the refusal lists exactly the targets (search questions);
- ``refusal_text_only`` (text questions): greedy answer with no image is a refusal.

Writes the report JSON (``seal bench vqa``'s default ``runs/bench_vqa/<model folder name>.json``,
never the checkpoint's own ``metrics.json``): rates per tag and overall, and the pass/fail
of the targets (crops likelihood >= 0.95; on the global view the refusal fires on >= 0.90 of the
questions whose target is not legible there, ``search`` and ``text`` (small targets), and on <= 0.10
of the answerable ones: ``coarse`` (a large target) and text questions asked without an image).
Prints one line per tag and the targets.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

TARGETS = {"crops_likelihood_min": 0.95, "search_refusal_min": 0.90, "answerable_refusal_max": 0.10}
CATEGORIES = ("direct_attributes", "relative_position", "coarse_attributes", "text_only")


def ensure_benchmark(data: Path, n: int, seed: int) -> None:
    """Generate a mixed-suite test-split SynthVStar benchmark into ``data`` unless it is there."""
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    if (data / "test_questions.jsonl").is_file():
        return
    print(f"generating {n} SynthVStar test samples (mixed suite, seed {seed}) into {data}", flush=True)
    generate_benchmark(SynthConfig(n=n, seed=seed, split="test", suite="mixed"), data)


def read_samples(data: Path, limit: int | None = None) -> list[dict]:
    """Benchmark samples in question order: V*Bench JSON fields + ``image_path`` + the letter record."""
    from seal.core.errors import InputError

    questions = data / "test_questions.jsonl"
    if not questions.is_file():
        raise InputError("not a SynthVStar benchmark (test_questions.jsonl missing)", data)
    samples = []
    for line in questions.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        letter = json.loads(line)
        image_path = data / letter["image"]
        meta = json.loads(image_path.with_suffix(".json").read_text(encoding="utf-8"))
        lines = letter["text"].split("\n")
        short = [ln.split(") ", 1)[1] for ln in lines[1:] if ln.startswith("(")]
        samples.append({**meta, "image_path": image_path, "short_options": short, "label": letter["label"],
                        "category": letter["category"]})
        if limit is not None and len(samples) >= limit:
            break
    return samples


def ground_truth_memory(vqa, sample: dict, max_pixels: int):
    """The visual working memory of one sample (:func:`read_samples`) in ``vqa``'s layout: its image
    (loaded under ``max_pixels``, ``vwm.global_image``) as the global view and a ground-truth crop of
    every target (score 1), as the agent lays out found targets."""
    from seal.core.geometry import xywh_to_xyxy
    from seal.core.image_io import load_image
    from vwm.layout import VisualWorkingMemory

    vwm = VisualWorkingMemory(global_image=load_image(sample["image_path"], max_pixels), config=vqa.vwm_config)
    for name, box in zip(sample["target_object"], sample["bbox"]):
        vwm.add_target(name, xywh_to_xyxy(box), 1.0)
    return vwm


def check_sample(vqa, sample: dict, max_pixels: int) -> dict:
    """Every measurement of one sample (see the module docstring)."""
    from seal.vqa import is_refusal, parse_missing_targets

    vwm = ground_truth_memory(vqa, sample, max_pixels)
    image = vwm.global_image
    q, options = sample["question"], sample["options"]
    crops = vqa.score_options(None, q, options, vwm=vwm)
    letter, _ = vqa.choose_letter(None, q, sample["short_options"], vwm=vwm)
    glob = vqa.score_options(image, q, options)
    reply = vqa.answer(image, q)
    parsed = parse_missing_targets(reply)
    row = {"tag": sample["tag"], "category": sample["category"],
           "crops_likelihood": _argmax(crops) == 0, "crops_letter": letter == sample["label"],
           "global_likelihood": _argmax(glob) == 0, "refusal_global": is_refusal(reply),
           "refusal_targets_ok": parsed is not None and sorted(parsed) == sorted(sample["target_object"]),
           "reply": reply}
    if sample["tag"] == "text":
        row["refusal_text_only"] = is_refusal(vqa.answer(None, q))
    return row


def summarize(rows: list[dict]) -> dict:
    """Rates per tag and overall, plus the targets' pass/fail."""
    keys = ("crops_likelihood", "crops_letter", "global_likelihood", "refusal_global", "refusal_targets_ok",
            "refusal_text_only")
    groups = {"overall": rows}
    for tag in ("search", "coarse", "text"):
        groups[tag] = [r for r in rows if r["tag"] == tag]
    for cat in CATEGORIES:
        groups[cat] = [r for r in rows if r["category"] == cat]
    rates = {}
    for name, group in groups.items():
        if not group:
            continue
        rates[name] = {"n": len(group)}
        for k in keys:
            vals = [r[k] for r in group if k in r]
            if vals and not (k == "refusal_targets_ok" and name not in ("search", "direct_attributes",
                                                                      "relative_position")):
                rates[name][k] = round(sum(vals) / len(vals), 4)
    # Legibility decides: search and text questions have small targets (not legible in the global
    # view: the refusal should fire), coarse questions a large one (it should not). A text question
    # asked with no image is answerable from its text: no refusal either.
    illegible = [r["refusal_global"] for r in rows if r["tag"] in ("search", "text") and "refusal_global" in r]
    legible = [r["refusal_global"] for r in rows if r["tag"] == "coarse" and "refusal_global" in r]
    legible += [r["refusal_text_only"] for r in rows if "refusal_text_only" in r]
    rates["illegible_refusal"] = round(sum(illegible) / max(1, len(illegible)), 4)
    rates["answerable_refusal"] = round(sum(legible) / max(1, len(legible)), 4)
    passed = {
        "crops_likelihood": rates["overall"]["crops_likelihood"] >= TARGETS["crops_likelihood_min"],
        "search_refusal": rates["illegible_refusal"] >= TARGETS["search_refusal_min"],
        "answerable_refusal": rates["answerable_refusal"] <= TARGETS["answerable_refusal_max"],
    }
    return {"rates": rates, "targets": TARGETS, "passed": passed, "all_passed": all(passed.values())}


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def run_bench_vqa(model: str | Path, data: Path, out: Path, n: int = 300, seed: int = 0,
                  limit: int | None = None) -> dict:
    """Measure the VQA checkpoint ``model`` on the benchmark ``data`` (generated with ``n`` samples
    and ``seed`` when missing; the first ``limit`` samples), print one line per tag and the targets,
    and write the report to ``out``.

    Raises:
        InputError: ``data`` is not a SynthVStar benchmark, or ``model`` is not a VQA checkpoint.
    """
    from seal.core.image_io import DEFAULT_MAX_PIXELS
    from seal.core.runs import command_line
    from seal.vqa import VQAModel

    ensure_benchmark(data, n, seed)
    samples = read_samples(data, limit)
    vqa = VQAModel.load(model)
    started = time.time()
    rows = [check_sample(vqa, s, DEFAULT_MAX_PIXELS) for s in samples]
    report = summarize(rows)
    report.update(model=str(model), data=str(data), samples=len(rows),
                  seconds=round(time.time() - started, 1), command=command_line())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name, r in report["rates"].items():
        line = " ".join(f"{k}={v}" for k, v in r.items()) if isinstance(r, dict) else str(r)
        print(f"{name:18s} {line}", flush=True)
    print(f"targets passed: {report['passed']} -> {'ALL PASSED' if report['all_passed'] else 'NOT MET'}")
    print(f"metrics written to {out}")
    return report
