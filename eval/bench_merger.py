"""The token merger against the stride pruning proxy at equal token counts, on the held-out SynthVStar
benchmark (mixed suite, test split), with ground-truth crops and the option likelihood protocol.

Per sample the VQA model reads the global view + every target's ground-truth crop (the VWM layout of
inference, as ``seal bench vqa``'s ``crops_likelihood``) and scores the full-sentence options
(:func:`seal.vqa.scoring.reply_token_logprobs`, mean per token; right when option 0 scores highest):

- ``full``: every vision token (``N`` per image);
- ``merger@M``: each image merged to ``M`` tokens (:func:`seal.vqa.merged_forward.merged_prompt`);
- ``stride@M`` / ``topk_norm@M``: the pruning proxies keeping ``M`` of the ``N`` tokens (ratio
  ``M / N``, :class:`seal.vqa.token_keep.TokenKeep`).

Reported: each variant's accuracy with a 95% Wilson interval, and per ``M`` and proxy the paired
difference merger - proxy with a 95% paired-bootstrap interval (same questions).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of ``k`` successes in ``n`` trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(centre - half, 4), round(centre + half, 4)


def paired_bootstrap(a: Sequence[bool], b: Sequence[bool], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of ``mean(a) - mean(b)`` over paired resamples of the questions."""
    import numpy as np

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(reps, len(diff)))].mean(axis=1)
    return round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)


PROXIES = ("stride", "topk_norm")
"""The pruning proxies compared at each ``M``."""


def sample_scores(vqa, merger, sample: dict, tokens: Sequence[int], max_pixels: int) -> dict[str, bool]:
    """Whether each variant ranks the correct option first on one sample (keys ``full``,
    ``merger@M`` and ``<proxy>@M`` for each of :data:`PROXIES`)."""
    from eval.bench_vqa import ground_truth_memory
    from seal.vqa.merged_forward import merged_prompt
    from seal.vqa.scoring import reply_token_logprobs
    from seal.vqa.token_keep import TokenKeep

    vwm = ground_truth_memory(vqa, sample, max_pixels)
    replies = [vqa.reply_ids(str(o)) for o in sample["options"]]

    def right(enc) -> bool:
        scores = [float(lp.mean()) for lp in reply_token_logprobs(vqa.model, enc, replies, vqa.pad_id)]
        return max(range(len(scores)), key=scores.__getitem__) == 0

    vqa.keep_tokens(None)
    enc = vqa.encode(sample["question"], vwm)
    n = vqa.last_image_tokens // int(enc["pixel_values"].shape[0])
    row = {"full": right(enc)}
    for m in tokens:
        row[f"merger@{m}"] = right(merged_prompt(vqa.model, merger, enc, vqa.image_token_id, m))
        for proxy in PROXIES:
            vqa.keep_tokens(TokenKeep(proxy, m / n))
            try:
                kept = vqa.encode(sample["question"], vwm)
                if vqa.last_image_tokens != m * int(enc["pixel_values"].shape[0]):
                    raise ValueError(f"{proxy} kept {vqa.last_image_tokens} tokens, expected {m} per image")
                row[f"{proxy}@{m}"] = right(kept)
            finally:
                vqa.keep_tokens(None)
    return row


def summarize(rows: list[dict], tokens: Sequence[int]) -> dict:
    """Accuracy (with Wilson intervals) per variant, overall and per tag; paired merger - proxy for
    each proxy present in the rows."""
    proxies = [p for p in PROXIES if rows and f"{p}@{tokens[0]}" in rows[0]]
    variants = ["full"] + [f"{kind}@{m}" for m in tokens for kind in ("merger", *proxies)]
    report: dict = {"n": len(rows), "accuracy": {}, "by_tag": {}, **{f"merger_minus_{p}": {} for p in proxies}}
    for v in variants:
        k = sum(r[v] for r in rows)
        report["accuracy"][v] = {"acc": round(k / max(1, len(rows)), 4), "ci95": wilson(k, len(rows))}
    for tag in sorted({r["tag"] for r in rows}):
        group = [r for r in rows if r["tag"] == tag]
        report["by_tag"][tag] = {"n": len(group), **{v: round(sum(r[v] for r in group) / len(group), 4)
                                                     for v in variants}}
    for m in tokens:
        for p in proxies:
            a, b = [r[f"merger@{m}"] for r in rows], [r[f"{p}@{m}"] for r in rows]
            report[f"merger_minus_{p}"][str(m)] = {"diff": round((sum(a) - sum(b)) / max(1, len(rows)), 4),
                                                   "ci95": paired_bootstrap(a, b)}
    return report


def run_bench_merger(vqa_path: str | Path, merger_path: str | Path, data: Path, out: Path,
                     tokens: Sequence[int] = (32, 16), n: int = 200, seed: int = 0,
                     limit: int | None = None) -> dict:
    """Score ``vqa_path`` with the merger ``merger_path`` and with the stride proxy at each ``M`` of
    ``tokens`` on the benchmark ``data`` (generated when missing: ``n`` samples, ``seed``); write the
    report JSON to ``out`` and return it."""
    from eval.bench_vqa import ensure_benchmark, read_samples
    from seal.core.image_io import DEFAULT_MAX_PIXELS
    from seal.core.manifest import check_trained_against, read_manifest
    from seal.vqa import VQAModel
    from seal.vqa.merger import load_merger

    ensure_benchmark(data, n, seed)
    samples = read_samples(data, limit)
    vqa = VQAModel.load(vqa_path)
    check_trained_against(read_manifest(merger_path, "merger"), "vqa", vqa_path,
                          "train a merger for this VQA model (seal train merger)")
    merger = load_merger(merger_path)
    started = time.time()
    rows = []
    for s in samples:
        rows.append({"tag": s["tag"], **sample_scores(vqa, merger, s, tokens, DEFAULT_MAX_PIXELS)})
    report = summarize(rows, tokens)
    report.update(vqa=str(vqa_path), merger=str(merger_path), data=str(data), tokens=list(tokens),
                  seconds=round(time.time() - started, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
