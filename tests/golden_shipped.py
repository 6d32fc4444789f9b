"""Golden outputs of the shipped tiny models (``checkpoints/``) on fixed SynthVStar test samples,
with the right answers beside them.

Each sample records its ground truth (``truth``: the correct option's index and text from the
benchmark sample, each annotated target's true box) next to what the shipped models did: for the
agent runs whether the answer was right (``correct``) and the IoU of each searched target's box
with its true box (``iou``), for the direct searches the true box (``true_box_xyxy``) and the IoU
of the found box with it.

``python -m tests.golden_shipped`` prints how the models score now against the previous golden
(answers right, targets found with IoU >= 0.5) without writing anything; ``--update`` prints the
same comparison and rewrites ``tests/golden/shipped.json`` (do it only when a behaviour change is
intended, and say so in the commit, with the printed accuracy line). ``tests/test_shipped_models.py``
recomputes :func:`observe` and compares with tolerances (boxes in px, scores, actions and answers
exactly), and checks that the recorded truth is the benchmark regenerated now.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "shipped.json"
CHECKPOINTS = {"vqa": ROOT / "checkpoints" / "vqa_tiny", "vsm": ROOT / "checkpoints" / "vsm_tiny",
               "policy": ROOT / "checkpoints" / "policy_tiny", "checker": ROOT / "checkpoints" / "vqa_check_tiny"}
BENCH_SEED, BENCH_N = 11, 3
"""The fixed samples: ``seal bench synth --split test --suite mixed --seed 11 --n 3``."""
RUNS = ("policy", "full")
"""Agent runs per sample: the learned policy, and vision forced to FULL."""
SEARCHES = ("search", "checked_search")
"""Direct searches of each annotated target: the search model alone, and hit-checked."""
IOU_FOUND = 0.5
"""A target counts as found when the box's IoU with its true box is at least this."""


def make_bench(out: Path) -> Path:
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    generate_benchmark(SynthConfig(n=BENCH_N, seed=BENCH_SEED, split="test", suite="mixed"), out)
    return out


def _box(values) -> list[float]:
    return [round(float(v), 1) for v in values]


def iou(box: list[float] | None, true_box: list[float] | None) -> float | None:
    """IoU of two recorded ``[x1, y1, x2, y2]`` boxes, 3 decimals; None without a box."""
    from seal.core.geometry import iou_xyxy

    if box is None or true_box is None:
        return None
    return round(float(iou_xyxy(box, true_box)), 3)


def truth_of(sample) -> dict:
    """The benchmark's answer to ``sample``: the correct option and each target's true box."""
    return {"answer_index": int(sample.answer), "answer": sample.options[sample.answer],
            "targets": [{"target": name, "box_xyxy": _box(box)}
                        for name, box in zip(sample.targets, sample.boxes_xyxy(), strict=True)]}


def _true_box(truth: dict, name: str) -> list[float] | None:
    return next((t["box_xyxy"] for t in truth["targets"] if t["target"] == name), None)


def observe(bench: Path) -> dict:
    """What the shipped models do on every sample of ``bench``: one agent run per sample (learned
    policy, VSM localizer) plus a forced-FULL run, and direct searches of each annotated target: by
    the search model alone, and hit-checked by the shipped VQA checker (``checkpoints/vqa_check_tiny``,
    asked as its manifest records) reading the target's words. Beside each output, the truth."""
    import torch

    from eval.readers.vstar import read_vstar
    from search.hit_check.words import VQAWordCheck
    from search.session import SearchSession
    from search.vsm.localizer import load_vsm_localizer
    from seal.agent.pipeline import Agent
    from seal.config import load
    from seal.vqa.model import VQAModel
    from vwm.budget import VisionBudget

    torch.set_num_threads(1)
    cfg = load([], [f"models.vqa_path={CHECKPOINTS['vqa']}", f"models.vsm_path={CHECKPOINTS['vsm']}",
                    f"policy.checkpoint={CHECKPOINTS['policy']}"])
    agent = Agent.from_config(cfg)
    localizer = load_vsm_localizer(CHECKPOINTS["vsm"])
    checker_model = VQAModel.load(CHECKPOINTS["checker"], vwm_config=cfg.vwm)
    checker = VQAWordCheck(checker_model, cfg.hit_check.asked_as(checker_model.hit_check_settings()),
                           VisionBudget(cfg.vision_budget, checker_model.processor))
    out = []
    for sample in read_vstar(bench):
        agent.set_image(sample.image)
        truth = truth_of(sample)
        rec = {"id": sample.question_id, "tag": sample.tag, "truth": truth}
        for mode in RUNS:
            res = agent.ask(sample.question, list(sample.options), force_action=None if mode == "policy" else "full")
            rec[mode] = {"action": res.action, "escalated": res.escalation is not None,
                         "answer_index": res.answer_index, "targets": list(res.targets),
                         "found": [bool(r.found) for r in res.search],
                         "vision_tokens": int(res.ledger.vision_tokens), "probs": res.decision.to_json()["probs"],
                         # not in the goldens: read by test_shipped_models's ledger check
                         "hit_checks": sum(int(r.hit_check_calls) for r in res.search),
                         "verify_tokens": int(res.ledger.vision_tokens_hit_check),
                         "llm_calls": int(res.ledger.llm_calls),
                         "ledger_hit_checks": int(res.ledger.hit_checks),
                         # the truth beside the output
                         "correct": res.answer_index == truth["answer_index"],
                         "iou": [iou(_box(r.box_xyxy) if r.found else None, _true_box(truth, r.target))
                                 for r in res.search]}
        for key, session in (("search", SearchSession(localizer, agent.views.source, cfg.search, None, cfg.hit_check)),
                             ("checked_search", SearchSession(localizer, agent.views.source, cfg.search, checker,
                                                              cfg.hit_check))):
            rec[key] = [_searched(name, session.search(name), _true_box(truth, name)) for name in sample.targets]
        out.append(rec)
    return {"bench": {"seed": BENCH_SEED, "n": BENCH_N}, "samples": out}


def _searched(name: str, r, true_box: list[float]) -> dict:
    box = None if not r.found else _box(r.box_xyxy)
    return {"target": name, "found": bool(r.found), "score": round(float(r.score), 4),
            "box_xyxy": box, "nodes_visited": int(r.nodes_visited),
            "hit_check_score": None if r.hit_check_score is None else round(float(r.hit_check_score), 4),
            "true_box_xyxy": true_box, "iou": iou(box, true_box)}


def accuracy(doc: dict, truths: dict[str, dict]) -> dict[str, dict[str, tuple[int, int] | None]]:
    """Per run / search: ``answers`` right and ``targets`` found with IoU >= :data:`IOU_FOUND`, each
    ``(right, out_of)``, scored against ``truths`` (sample id -> :func:`truth_of`). The IoUs of the
    searches come from their boxes; those of the agent runs from the recorded ``iou`` (None when a
    golden older than the truth fields has none)."""
    samples = [s for s in doc["samples"] if s["id"] in truths]
    out: dict[str, dict[str, tuple[int, int] | None]] = {}
    for mode in RUNS:
        right = sum(s[mode]["answer_index"] == truths[s["id"]]["answer_index"] for s in samples)
        targets = None
        if all("iou" in s[mode] for s in samples):
            ious = [v for s in samples for v in s[mode]["iou"]]
            targets = (sum(v is not None and v >= IOU_FOUND for v in ious), len(ious))
        out[mode] = {"answers": (right, len(samples)), "targets": targets}
    for key in SEARCHES:
        ious = [iou(r["box_xyxy"], _true_box(truths[s["id"]], r["target"])) for s in samples for r in s[key]]
        out[key] = {"answers": None, "targets": (sum(v is not None and v >= IOU_FOUND for v in ious), len(ious))}
    return out


def accuracy_change(before: dict | None, after: dict) -> str:
    """The lines ``--update`` prints: each run's and search's accuracy in ``before`` -> ``after``."""
    truths = {s["id"]: s["truth"] for s in after["samples"]}
    note = ""
    if before is None:
        before, note = {"samples": []}, " (no previous golden)"
    elif not all("truth" in s for s in before["samples"]):
        note = " (the previous golden recorded no truth: scored against the benchmark regenerated now)"
    else:
        truths_before = {s["id"]: s["truth"] for s in before["samples"]}
        if truths_before != truths:
            note = " (the benchmark changed: before is scored against the previous golden's truth)"
            truths = truths_before
    was, now = accuracy(before, truths), accuracy(after, {s["id"]: s["truth"] for s in after["samples"]})

    def fmt(v: tuple[int, int] | None) -> str:
        return "?" if v is None else f"{v[0]}/{v[1]}"

    lines = [f"accuracy of the shipped models, previous golden -> now{note}:"]
    for key in RUNS + SEARCHES:
        parts = []
        if now[key]["answers"] is not None:
            parts.append(f"answers right {fmt(was.get(key, {}).get('answers'))} -> {fmt(now[key]['answers'])}")
        parts.append(f"targets found with IoU >= {IOU_FOUND} "
                     f"{fmt(was.get(key, {}).get('targets'))} -> {fmt(now[key]['targets'])}")
        lines.append(f"  {key:15s}" + "; ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    p = argparse.ArgumentParser(prog="python -m tests.golden_shipped",
                                description="Score the shipped models against the previous golden "
                                            "(a dry run unless --update).")
    p.add_argument("--update", action="store_true", help=f"rewrite {GOLDEN.relative_to(ROOT)}")
    p.add_argument("--json", action="store_true", help="also print the observed goldens")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        got = observe(make_bench(Path(tmp) / "bench"))
    before = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.is_file() else None
    text = json.dumps(got, indent=1) + "\n"
    if args.json:
        print(text, end="")
    print(accuracy_change(before, got))
    if args.update:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
        print(f"wrote {GOLDEN.relative_to(ROOT)}")
    else:
        print(f"dry run: {GOLDEN.relative_to(ROOT)} unchanged (--update rewrites it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
