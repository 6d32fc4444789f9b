"""Golden outputs of the shipped tiny models (``checkpoints/``) on fixed SynthVStar test samples.

``python -m tests.golden_shipped --update`` rewrites ``tests/golden/shipped.json`` (do it only when a
behaviour change is intended, and say so in the commit); ``tests/test_shipped_models.py`` recomputes
:func:`observe` and compares with tolerances (boxes in px, scores, actions and answers exactly).
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


def make_bench(out: Path) -> Path:
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    generate_benchmark(SynthConfig(n=BENCH_N, seed=BENCH_SEED, split="test", suite="mixed"), out)
    return out


def observe(bench: Path) -> dict:
    """What the shipped models do on every sample of ``bench``: one agent run per sample (learned
    policy, VSM localizer) plus a forced-FULL run, and direct searches of each annotated target: by
    the search model alone, and hit-checked by the shipped VQA checker (``checkpoints/vqa_check_tiny``,
    asked as its manifest records) reading the target's words."""
    import torch

    from eval.readers.vstar import read_vstar
    from search.session import SearchSession
    from search.vsm.localizer import load_vsm_localizer
    from seal.agent.pipeline import Agent
    from seal.config import load
    from search.hit_check.words import VQAWordCheck
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
        rec = {"id": sample.question_id, "tag": sample.tag}
        for mode in ("policy", "full"):
            res = agent.ask(sample.question, list(sample.options), force_action=None if mode == "policy" else "full")
            rec[mode] = {"action": res.action, "escalated": res.escalation is not None,
                         "answer_index": res.answer_index, "targets": list(res.targets),
                         "found": [bool(r.found) for r in res.search],
                         "vision_tokens": int(res.ledger.vision_tokens), "probs": res.decision.to_json()["probs"],
                         # not in the goldens: read by test_shipped_models's ledger check
                         "hit_checks": sum(int(r.hit_check_calls) for r in res.search),
                         "verify_tokens": int(res.ledger.vision_tokens_hit_check), "llm_calls": int(res.ledger.llm_calls),
                         "ledger_hit_checks": int(res.ledger.hit_checks)}
        for key, session in (("search", SearchSession(localizer, agent.views.source, cfg.search, None, cfg.hit_check)),
                             ("checked_search", SearchSession(localizer, agent.views.source, cfg.search, checker,
                                                              cfg.hit_check))):
            rec[key] = [_searched(name, session.search(name)) for name in sample.targets]
        out.append(rec)
    return {"bench": {"seed": BENCH_SEED, "n": BENCH_N}, "samples": out}


def _searched(name: str, r) -> dict:
    return {"target": name, "found": bool(r.found), "score": round(float(r.score), 4),
            "box_xyxy": None if not r.found else [round(float(v), 1) for v in r.box_xyxy],
            "nodes_visited": int(r.nodes_visited),
            "hit_check_score": None if r.hit_check_score is None else round(float(r.hit_check_score), 4)}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    p = argparse.ArgumentParser(prog="python -m tests.golden_shipped")
    p.add_argument("--update", action="store_true", help=f"rewrite {GOLDEN.relative_to(ROOT)}")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        got = observe(make_bench(Path(tmp) / "bench"))
    text = json.dumps(got, indent=1) + "\n"
    if args.update:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
        print(f"wrote {GOLDEN}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
