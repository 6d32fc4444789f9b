"""The layer pruners against the pruning proxy on a SynthVStar benchmark: accuracy by option likelihood with
the ground-truth crops at equal vision-token counts, and the wall time of the answering forward.

Per sample (global view + a crop of every target, the VWM layout of inference; the official
likelihood protocol, right when option 0 scores highest):

- ``full``: the VQA model's own forward, every vision token;
- ``pruners@r``: the trained heads keeping ``r`` of each image's tokens from their layer on, hard mode
  (:class:`seal.vqa.pruned_forward.PrunedLM`: the dropped tokens leave the sequence and the cache);
- ``untrained@r``: the same heads freshly initialised (seed 0): does training matter;
- ``stride@r`` / ``topk_norm@r``: the proxy (:mod:`seal.vqa.token_keep`) with the same final count,
  removed from the input of every layer;
- ``stride@mean(r)``: the proxy keeping the pruned forward's *mean* count over the layers
  (``(l + (L - l) * r) / L`` for one head before layer ``l`` of ``L``), equal compute in the LLM;
- ``stride_at_layer@r``: the stride pattern applied where the heads prune (hard mode, an explicit
  mask before layer ``l``): the same count in every layer as ``pruners@r``, only the choice differs.

Timing: for the first ``time_samples`` prompts, the answering forward (prompt prefill + the batched
option continuation) ``repeats`` times each (after one warm-up call): unpruned (the model's own
``reply_token_logprobs``), our wrapper without pruning (its own overhead), and hard-pruned at each
ratio; the sums over the prompts of each one's min and median. Twice: from the pixels (vision tower
included) and ``_llm_only`` (the images encoded beforehand, passed as ``mm_encoder_outputs``).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable

from eval.timing import wall_times


def _argmax(values) -> int:
    return max(range(len(values)), key=lambda i: float(values[i]))


def _scores(logps) -> list[float]:
    return [float(lp.mean()) for lp in logps]


def bench_pruners(vqa_path: str | Path, pruners_dir: str | Path, data: Path, out: Path,
                  ratios: tuple[float, ...] = (0.5, 0.25), limit: int | None = None, time_samples: int = 20,
                  repeats: int = 5, n: int = 150, seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Measure and write the report JSON to ``out`` (see the module docstring); returns it."""
    import torch

    from eval.bench_vqa import ensure_benchmark, ground_truth_memory, read_samples
    from eval.metrics import bootstrap_ci
    from seal.core.image_io import DEFAULT_MAX_PIXELS
    from seal.vqa import VQAModel
    from seal.vqa.pruned_forward import PrunedLM
    from seal.vqa.pruners import LayerPruners
    from seal.vqa.scoring import reply_token_logprobs
    from seal.vqa.token_keep import TokenKeep

    ensure_benchmark(data, n, seed)
    samples = read_samples(data, limit)
    vqa = VQAModel.load(vqa_path)
    n_layers = len(vqa.model.model.language_model.layers)
    trained = {r: PrunedLM(vqa.model, LayerPruners.load(pruners_dir, keep_ratios=[r])) for r in ratios}
    layer = trained[ratios[0]].pruners.cfg.layers
    if len(layer) != 1:
        raise ValueError(f"bench_pruners measures one pruning layer, the heads prune at {layer}")
    layer = layer[0]
    width = trained[ratios[0]].pruners.width
    untrained = {}
    for r in ratios:
        torch.manual_seed(0)
        cfg = trained[r].pruners.cfg
        untrained[r] = PrunedLM(vqa.model, LayerPruners(cfg, width).eval())
    mean_ratio = {r: (layer + (n_layers - layer) * r) / n_layers for r in ratios}

    bare = PrunedLM(vqa.model, None)
    timed = ["unpruned", "wrapper_unpruned", *(f"pruners@{r}" for r in ratios)]
    rows, timings = [], {f"{name}{part}": [] for name in timed for part in ("", "_llm_only")}
    started = time.time()
    for k, s in enumerate(samples):
        vwm = ground_truth_memory(vqa, s, DEFAULT_MAX_PIXELS)
        replies = [vqa.reply_ids(o) for o in s["options"]]
        vqa.keep_tokens(None)
        enc = vqa.encode(s["question"], vwm)
        full_tokens = vqa.last_image_tokens
        row = {"tag": s["tag"], "category": s["category"], "vision_tokens": full_tokens,
               "full": _argmax(_scores(reply_token_logprobs(vqa.model, enc, replies, vqa.pad_id))) == 0}
        for r in ratios:
            state_scores = trained[r].reply_logprobs(enc, replies, vqa.pad_id, hard=True)
            row[f"pruners@{r}"] = _argmax(_scores(state_scores)) == 0
            row[f"untrained@{r}"] = _argmax(_scores(untrained[r].reply_logprobs(enc, replies, vqa.pad_id))) == 0
            for mode, ratio, key in (("stride", r, f"stride@{r}"), ("topk_norm", r, f"topk_norm@{r}"),
                                     ("stride", mean_ratio[r], f"stride@mean({r})")):
                vqa.keep_tokens(TokenKeep(mode, ratio))
                kept = vqa.encode(s["question"], vwm)
                row[f"{key}_tokens"] = vqa.last_image_tokens
                row[key] = _argmax(_scores(reply_token_logprobs(vqa.model, kept, replies, vqa.pad_id))) == 0
            vqa.keep_tokens(None)
            row[f"pruners@{r}_tokens"] = trained[r].prefill(enc).vision_read
            masks = {layer: stride_mask(enc["input_ids"] == vqa.image_token_id, r)}
            row[f"stride_at_layer@{r}"] = _argmax(_scores(trained[r].reply_logprobs(enc, replies, vqa.pad_id,
                                                                                   masks=masks))) == 0
        if k < time_samples:
            vqa.keep_tokens(TokenKeep("stride", 1.0))  # every token, the images encoded once beforehand
            encoded = vqa.encode(s["question"], vwm)
            vqa.keep_tokens(None)
            for prompt, part in ((enc, ""), (encoded, "_llm_only")):
                timings[f"unpruned{part}"].append(
                    wall_times(lambda p=prompt: reply_token_logprobs(vqa.model, p, replies, vqa.pad_id), repeats))
                timings[f"wrapper_unpruned{part}"].append(
                    wall_times(lambda p=prompt: bare.reply_logprobs(p, replies, vqa.pad_id), repeats))
                for r in ratios:
                    timings[f"pruners@{r}{part}"].append(
                        wall_times(lambda r=r, p=prompt: trained[r].reply_logprobs(p, replies, vqa.pad_id), repeats))
        rows.append(row)
        if (k + 1) % 25 == 0:
            log(f"{k + 1}/{len(samples)} samples, {time.time() - started:.0f} s")

    methods = ["full"] + [f"{m}@{r}" for r in ratios for m in ("pruners", "untrained", "stride_at_layer", "stride",
                                                                 "topk_norm")] + \
        [f"stride@mean({r})" for r in ratios]
    accuracy = {}
    for m in methods:
        correct = [bool(row[m]) for row in rows]
        low, high = bootstrap_ci(correct)
        accuracy[m] = {"accuracy": round(sum(correct) / len(correct), 4), "ci95": [round(low, 4), round(high, 4)]}
    tokens = {"full": statistics.mean(r["vision_tokens"] for r in rows)}
    for r in ratios:
        per_layer = [statistics.mean(row[f"pruners@{r}_tokens"][i] for row in rows) for i in range(n_layers)]
        tokens[f"pruners@{r}"] = {"per_layer": [round(v, 1) for v in per_layer],
                                  "mean_over_layers": round(statistics.mean(per_layer), 1)}
        for key in (f"stride@{r}", f"topk_norm@{r}", f"stride@mean({r})"):
            tokens[key] = round(statistics.mean(row[f"{key}_tokens"] for row in rows), 1)
    # per-prompt sums over the timed prompts, for each repeat's position in the sorted list
    timing = {}
    for name, per_prompt in timings.items():
        if per_prompt:
            timing[name] = {"min_s": round(sum(min(t) for t in per_prompt), 4),
                            "median_s": round(sum(statistics.median(t) for t in per_prompt), 4)}
    for r in ratios:
        for part in ("", "_llm_only"):
            if f"pruners@{r}{part}" in timing:
                for base in ("unpruned", "wrapper_unpruned"):
                    timing[f"speedup@{r}{part}_vs_{base}"] = {
                        k: round(timing[f"{base}{part}"][k] / timing[f"pruners@{r}{part}"][k], 3)
                        for k in ("min_s", "median_s")}
    report = {"vqa": str(vqa_path), "pruners": str(pruners_dir), "data": str(data), "samples": len(rows),
              "pruning_layer": layer, "llm_layers": n_layers, "accuracy": accuracy, "vision_tokens": tokens,
              "timing": {"prompts": min(time_samples, len(rows)), "repeats": repeats, **timing},
              "torch_threads": torch.get_num_threads(), "seconds": round(time.time() - started, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def stride_mask(vision, ratio: float):
    """(1, L) bool: the stride proxy's choice (:func:`vwm.budget.prune_token_indices`) in each image's
    block of the vision positions ``vision`` (1, L)."""
    import torch

    from seal.vqa.pruned_forward import block_sizes
    from vwm.budget import prune_token_indices

    positions = torch.nonzero(vision[0]).flatten()
    mask, start = torch.zeros_like(vision), 0
    for size in block_sizes(vision)[0]:
        chosen = torch.as_tensor(prune_token_indices(torch.zeros(size), ratio, "stride"))
        mask[0, positions[start + chosen]] = True
        start += size
    return mask
