"""One generic evaluation runner: any dataset reader x the agent under any policy (learned or baseline).

The policy is not the runner's business: ``policy.baseline_name`` in the config decides which one
the agent uses, so every baseline runs through the same prompts, decoding, vision budgets and cost
accounting. The runner asks every question, appends one prediction record per question to
``OUT/predictions.jsonl`` as it goes, then writes the run's row of ``OUT/results.csv`` and its entry
in ``OUT/summary.json`` (see :mod:`eval.results`, :mod:`eval.metrics`).

A run is identified by ``run_id`` = hash of the resolved config, dataset, data path and protocol;
re-running the same run resumes it (questions already answered are skipped).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from eval.metrics import run_metrics
from eval.readers.vstar import PROTOCOL_LETTER, PROTOCOL_LIKELIHOOD, QUESTIONS_FILE, VStarSample, read_vstar
from eval.results import PredictionLog, write_results_row, write_summary
from eval.tsv_samples import TSV_DATASETS
from seal.core.errors import InputError


def read_vstar_protocol(path: Path, protocol: str) -> list[VStarSample]:
    """V*Bench-layout samples: the folder's per-image JSONs (``likelihood``) or its
    ``test_questions.jsonl`` (``letter``; ``path`` may also be the jsonl itself)."""
    path = Path(path)
    if protocol == PROTOCOL_LETTER and path.is_dir():
        path = path / QUESTIONS_FILE
        if not path.is_file():
            raise InputError(f"--protocol letter needs {QUESTIONS_FILE} in the benchmark folder", path)
    samples = read_vstar(path)
    wrong = [s for s in samples if s.protocol != protocol]
    if wrong:
        raise InputError(f"--protocol {protocol}: this input holds {wrong[0].protocol} samples "
                         f"(a folder is scored by likelihood, a test_questions.jsonl by letter)", path)
    return samples


DATASETS: dict[str, Callable[[Path, str], list]] = {
    "synth": read_vstar_protocol,  # SynthVStar: the V*Bench layout + categories.json extras
    "vstar": read_vstar_protocol,
    **TSV_DATASETS,  # mmbench, hrbench: VLMEvalKit TSVs, one sample per row (eval.tsv_samples)
}
"""``--dataset`` name -> reader ``(path, protocol) -> samples``. Another benchmark is one more entry."""


class AgentLike(Protocol):
    """What the runner needs of :class:`seal.agent.pipeline.Agent`."""

    def set_image(self, image: Any, annotation: Any = None) -> None: ...

    def ask(self, question: str, options: Sequence[str] | None = None, force_action: str | None = None,
            on_event: Any = None) -> Any: ...


@dataclass
class EvalRun:
    """What is evaluated and how (everything but the model config, which ``config`` holds).

    Attributes:
        dataset: a :data:`DATASETS` key.
        path: benchmark folder (or jsonl file).
        protocol: ``likelihood`` (folder JSONs, full-sentence options) or ``letter`` (jsonl).
        config: the resolved config as a plain dict (``seal.config.to_dict``), recorded and hashed.
        limit: evaluate only the first ``limit`` samples (None = all); not part of ``run_id``, so a
            larger limit continues a smaller run.
        seed: bootstrap seed.
        annotate: pass each sample's V*Bench JSON to ``set_image`` (the oracle localizer needs it).
        git_revision: recorded in the summary.
    """

    dataset: str
    path: Path
    protocol: str
    config: dict
    limit: int | None = None
    seed: int = 0
    annotate: bool = False
    git_revision: str = "unknown"

    @property
    def run_id(self) -> str:
        key = json.dumps({"config": self.config, "dataset": self.dataset, "protocol": self.protocol,
                          "path": str(Path(self.path).resolve())}, sort_keys=True, default=str)
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]

    @property
    def policy_name(self) -> str:
        """``policy.baseline_name`` or ``learned``."""
        return (self.config.get("policy") or {}).get("baseline_name") or "learned"

    @property
    def lambda_cost(self) -> float:
        """``policy.lambda_cost``; for the learned policy, the value its head was trained with: a
        loaded head ignores the run's own value."""
        from seal.core.paths import find_dir
        from seal.policy.config import trained_lambda_cost

        policy = self.config.get("policy") or {}
        if self.policy_name == "learned":
            head = find_dir(policy["checkpoint"]) if policy.get("checkpoint") else None
            trained = trained_lambda_cost(head) if head is not None else None
            if trained is not None:
                return trained
        return float(policy.get("lambda_cost", 0.0))


def load_samples(run: EvalRun) -> list[VStarSample]:
    if run.dataset not in DATASETS:
        raise InputError(f"--dataset: expected one of {sorted(DATASETS)}, found {run.dataset!r}")
    if run.protocol not in (PROTOCOL_LIKELIHOOD, PROTOCOL_LETTER):
        raise InputError(f"--protocol: expected likelihood or letter, found {run.protocol!r}")
    if run.annotate and run.dataset in TSV_DATASETS:
        raise InputError(f"--dataset {run.dataset} has no V*Bench annotations for the oracle localizer "
                         "(--models.localizer=oracle)", run.path)
    samples = DATASETS[run.dataset](Path(run.path), run.protocol)
    return samples if run.limit is None else samples[: run.limit]


def evaluate(agent: AgentLike, samples: Sequence[VStarSample], run: EvalRun, out_dir: str | Path,
             progress: bool = True) -> dict:
    """Ask every sample not yet answered by this run, then write results.csv / summary.json.

    Returns:
        The run's results.csv row (``run_id``, ``baseline_name``, ``dataset``, ``lambda_cost`` +
        :func:`eval.metrics.run_metrics`).
    """
    out = Path(out_dir)
    log = PredictionLog(out, run.run_id)
    done = log.done()
    todo = [s for s in samples if s.question_id not in done]
    answer_questions(agent, todo, run, log, _progress(len(samples), len(samples) - len(todo), progress))
    wanted = {s.question_id for s in samples}
    records = [r for r in log.records() if r["question_id"] in wanted]
    if not records:
        raise InputError("no questions to evaluate (empty dataset or --limit 0)", run.path)
    metrics = run_metrics(records, seed=run.seed)
    row = {"run_id": run.run_id, "baseline_name": run.policy_name, "dataset": run.dataset,
           "lambda_cost": run.lambda_cost, **metrics}
    write_results_row(out, row)
    write_summary(out, run.run_id, {
        "run_id": run.run_id, "seed": run.seed, "dataset": run.dataset, "path": str(run.path),
        "protocol": run.protocol, "limit": run.limit, "git_revision": run.git_revision,
        "baseline_name": run.policy_name, "metrics": metrics,
        "accuracy_ci95": [metrics["accuracy_ci_low"], metrics["accuracy_ci_high"]],
        "config": run.config})
    return row


def answer_questions(agent: AgentLike, todo: Sequence[VStarSample], run: EvalRun, log: Any, bar: Any) -> None:
    """Ask each of ``todo`` in turn and ``log.append`` its prediction record as soon as it is answered
    (``log``: a :class:`~eval.results.PredictionLog`, or a shard's log in :mod:`eval.sharded`)."""
    current_image: Path | None = None
    try:
        for sample in todo:
            if sample.image != current_image:
                annotation = sample_annotation(sample) if run.annotate else None
                agent.set_image(sample.image, annotation=annotation)
                current_image = sample.image
            start = time.perf_counter()
            result = agent.ask(sample.question, list(sample.options))
            log.append(prediction_record(sample, result, time.perf_counter() - start))
            bar.update(1)
    finally:
        bar.close()


def prediction_record(sample: VStarSample, result: Any, seconds: float) -> dict:
    """One predictions.jsonl line from an :class:`~seal.agent.pipeline.AgentResult`."""
    decision = getattr(result, "decision", None)
    ledger = result.ledger
    return {
        "question_id": sample.question_id, "category": sample.category, "tag": sample.tag,
        "image": str(sample.image),
        "gold": sample.answer, "answer_index": result.answer_index, "answer": result.answer,
        "correct": result.answer_index == sample.answer, "action": result.action,
        "reason": result.reason, "policy": getattr(result, "policy", None),
        "fallback_fired": bool(getattr(decision, "fallback_fired", False)),
        "escalated": getattr(result, "escalation", None) is not None,
        "probs": list(map(float, decision.probs)) if decision is not None else None,
        "entropy": round(float(decision.entropy), 6) if decision is not None else None,
        "targets": list(result.targets or []),
        "listed": _listed(result),
        "option_scores": None if getattr(result, "option_scores", None) is None
        else [round(float(s), 6) for s in result.option_scores],
        "search": [{"target": r.target, "found": bool(r.found), "nodes_visited": int(r.nodes_visited),
                    "box_xyxy": [round(float(v), 1) for v in r.box_xyxy] if r.found else None,
                    "score": round(float(r.score), 4)}
                   for r in (getattr(result, "search", None) or [])],
        "vision_tokens": int(ledger.vision_tokens), "llm_calls": int(ledger.llm_calls),
        "search_calls": int(ledger.search_calls), "seconds": round(seconds, 6),
        "stage_seconds": {name: round(float(s), 6) for name, s in sorted(ledger.seconds.items())},
        "peak_rss_mb": float(ledger.peak_rss_mb),
    }


def _listed(result: Any) -> dict | None:
    """How the FULL action came to list targets: ``{"by": "refusal"}`` (the greedy reply refused) or
    ``{"by": "list_targets_above", "refusal_probability": p}``; None when nothing was listed."""
    if not getattr(result, "targets", None):
        return None
    for event in getattr(result, "events", None) or []:
        if event.get("type") == "listed_anyway":
            return {"by": "list_targets_above", "refusal_probability": event.get("refusal_probability")}
    return {"by": "refusal"}


def sample_annotation(sample: VStarSample) -> Path | None:
    """The per-image V*Bench JSON of a sample (folder samples: their source; jsonl: the image's twin)."""
    if sample.source.suffix == ".json":
        return sample.source
    twin = sample.image.with_suffix(".json")
    return twin if twin.is_file() else None


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="q", desc="eval", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True)
