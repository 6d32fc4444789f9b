"""``seal bench answer-cost``: what the answering forward costs under each vision-token cut (issue 28,
part 6): accuracy, image tokens the LLM read, FLOPs and wall time per question, and their ratios to
the uncut forward.

The answering forward is one :meth:`seal.vqa.VQAModel.score_options` call (prompt encoding, vision
tower, the cut, the LLM prefill and the batched option continuation) over the VWM layout of inference:
the global view + a ground-truth crop of every target (as ``seal bench vqa``'s ``crops_likelihood``),
right when option 0 scores highest. Per cut (``vision_budget.pruning_mode`` with its ratio, or the
entropy cascade's ``alpha`` in budget mode) and question:

- ``flops``: every floating-point op of the call, counted by ``torch.utils.flop_counter.FlopCounterMode``;
  ``flops_tower``: those of the vision tower + projector encoding the prompt's images (every cut encodes
  every image in full), so ``flops - flops_tower`` is what the cut can save (merger included);
- ``tokens``: the image tokens the LLM read (:attr:`VQAModel.last_image_tokens`: the tokens in the
  model's input, the mean over the layers for the pruners, the count the ledger books);
- ``time``: wall seconds of the call, ``repeats`` times after one warm-up call (set the thread count
  before; the CLI's default is 1), min and median.

The summary per cut: accuracy (95% bootstrap interval, :func:`eval.metrics.bootstrap_ci`), mean tokens,
mean GFLOPs (total, after the tower), mean over questions of the per-question min / median milliseconds,
and each one's ratio to ``none``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from eval.bench_vqa import ground_truth_memory
from eval.timing import wall_times
from seal.core.errors import ConfigError

CUT_MODES = ("none", "stride", "topk_norm", "entropy", "merger", "pruners", "merger+pruners")
"""The ``vision_budget.pruning_mode`` values a cut can name."""
DEFAULT_CUTS = ("none", "stride:0.5", "stride:0.25", "topk_norm:0.5", "topk_norm:0.25", "entropy:0.5",
                "entropy:0.25", "merger:0.5", "merger:0.25", "pruners:0.5", "pruners:0.25", "merger+pruners:0.5")
"""The cuts issue 28 part 6 measures."""


@dataclass(frozen=True)
class Cut:
    """One vision-token cut, written ``mode:ratio`` (``none`` alone)."""

    mode: str
    """A ``vision_budget.pruning_mode`` of :data:`CUT_MODES`."""
    ratio: float = 1.0
    """``pruning_ratio`` (``0 < ratio <= 1``); for ``entropy`` the budget mode's ``alpha``."""

    def __post_init__(self) -> None:
        if self.mode not in CUT_MODES:
            raise ConfigError(f"--cuts: expected modes among {', '.join(CUT_MODES)}, found {self.mode!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"--cuts: expected 0 < ratio <= 1, found {self.ratio} for {self.mode}")

    @property
    def name(self) -> str:
        return "none" if self.mode == "none" else f"{self.mode}@{self.ratio:g}"

    def budget(self, merger_path: str, pruners_path: str):
        """The ``vision_budget`` section asking for this cut."""
        from vwm.budget import VisionBudgetConfig
        from vwm.entropy import EntropyConfig

        if self.mode == "entropy":
            return VisionBudgetConfig(pruning_mode="entropy", entropy=EntropyConfig(mode="budget", alpha=self.ratio))
        return VisionBudgetConfig(pruning_mode=self.mode, pruning_ratio=self.ratio,  # type: ignore[arg-type]
                                  merger_path=merger_path, pruners_path=pruners_path)


def parse_cuts(text: str | Sequence[str]) -> list[Cut]:
    """``"none,stride:0.5,entropy:0.25"`` (or its items) -> cuts, in order.

    Raises:
        ConfigError: an unknown mode, a ratio outside (0, 1], or a mode without its ratio.
    """
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    cuts = []
    for item in items:
        mode, _, ratio = item.partition(":")
        if mode != "none" and not ratio:
            raise ConfigError(f"--cuts: expected MODE:RATIO for {item!r} (e.g. stride:0.5)")
        try:
            cuts.append(Cut(mode, float(ratio) if ratio else 1.0))
        except ValueError:
            raise ConfigError(f"--cuts: expected a number after ':' in {item!r}") from None
    if not cuts:
        raise ConfigError("--cuts: expected at least one cut")
    return cuts


def count_flops(fn: Callable[[], object]) -> tuple[object, int]:
    """``(fn(), FLOPs of the call)`` (``FlopCounterMode``'s total)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, int(counter.get_total_flops())


def tower_flops(vqa, question: str, vwm) -> int:
    """FLOPs of encoding the prompt's images by the vision tower + projector (the same under every cut)."""
    import torch

    keep = vqa.token_keep
    vqa.keep_tokens(None)  # the full prompt's pixels
    try:
        pixels = vqa.encode(question, vwm)["pixel_values"].to(vqa.model.device, vqa.model.dtype)
    finally:
        vqa.keep_tokens(keep)
    with torch.no_grad():
        return count_flops(lambda: vqa.model.model.get_image_features(pixel_values=pixels, return_dict=True))[1]


def measure_question(vqa, sample: dict, vwm, repeats: int) -> dict:
    """One question's answering forward under the cut the model holds now (see the module docstring)."""
    question, options = sample["question"], [str(o) for o in sample["options"]]

    def call():
        return vqa.score_options(None, question, options, vwm=vwm)

    scores, flops = count_flops(call)
    tokens = vqa.last_image_tokens
    times = wall_times(call, repeats) if repeats > 0 else []
    best = max(range(len(scores)), key=scores.__getitem__)  # type: ignore[arg-type]
    return {"right": best == 0, "tokens": tokens, "flops": flops,
            "time_min_s": min(times) if times else None,
            "time_median_s": statistics.median(times) if times else None}


def summarize(rows: dict[str, list[dict]], tower: list[int]) -> dict[str, dict]:
    """Per cut: accuracy, mean tokens / GFLOPs / ms and the ratios to ``none`` (when measured)."""
    from eval.metrics import bootstrap_ci

    table = {}
    for name, per_q in rows.items():
        n, right = len(per_q), sum(r["right"] for r in per_q)
        flops = statistics.mean(r["flops"] for r in per_q)
        ci = [round(v, 4) for v in bootstrap_ci([r["right"] for r in per_q])]
        entry = {"n": n, "accuracy": round(right / n, 4), "ci95": ci,
                 "tokens": round(statistics.mean(r["tokens"] for r in per_q), 2),
                 "gflops": round(flops / 1e9, 4),
                 "gflops_after_tower": round((flops - statistics.mean(tower)) / 1e9, 4)}
        if per_q[0]["time_min_s"] is not None:
            entry["ms_min"] = round(1e3 * statistics.mean(r["time_min_s"] for r in per_q), 3)
            entry["ms_median"] = round(1e3 * statistics.mean(r["time_median_s"] for r in per_q), 3)
        table[name] = entry
    if "none" in table:
        base = table["none"]
        for entry in table.values():
            entry["ratio_to_none"] = {k: round(entry[k] / base[k], 4) for k in
                                      ("tokens", "gflops", "gflops_after_tower", "ms_min", "ms_median")
                                      if k in entry and base.get(k)}
    return table


def run_answer_cost(vqa, samples: Sequence[dict], cuts: Sequence[Cut], repeats: int = 5,
                    merger_path: str = "checkpoints/merger_tiny", pruners_path: str = "checkpoints/pruners_tiny",
                    max_pixels: int | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Measure every cut on every sample (see the module docstring) with the VQA model ``vqa`` (its cut is
    reset to none afterwards); returns ``{"cuts": summary per cut, "rows": per cut the per-question rows,
    "tower_flops": per question, ...}``."""
    import torch

    from seal.agent.pipeline import token_keep
    from seal.core.image_io import DEFAULT_MAX_PIXELS

    memories = [ground_truth_memory(vqa, s, max_pixels or DEFAULT_MAX_PIXELS) for s in samples]
    tower = [tower_flops(vqa, s["question"], m) for s, m in zip(samples, memories)]
    rows: dict[str, list[dict]] = {}
    started = time.time()
    try:
        for cut in cuts:
            vqa.keep_tokens(token_keep(cut.budget(merger_path, pruners_path), vqa.processor))
            rows[cut.name] = [measure_question(vqa, s, m, repeats) for s, m in zip(samples, memories)]
            if log is not None:
                log(f"{cut.name}: {len(samples)} questions, {time.time() - started:.0f} s")
    finally:
        vqa.keep_tokens(None)
    return {"cuts": summarize(rows, tower), "questions": len(samples), "repeats": repeats,
            "torch_threads": torch.get_num_threads(), "tower_flops": tower, "rows": rows,
            "seconds": round(time.time() - started, 1)}


def bench_answer_cost(model: str | Path, data: Path, out: Path, cuts: Sequence[Cut], repeats: int = 5,
                      limit: int | None = None, merger_path: str = "checkpoints/merger_tiny",
                      pruners_path: str = "checkpoints/pruners_tiny") -> dict:
    """Load the VQA checkpoint ``model``, measure ``cuts`` on the benchmark folder ``data`` (the first
    ``limit`` questions), write the report JSON to ``out``, print the table and return the report.

    Raises:
        InputError: ``data`` is not a SynthVStar benchmark.
    """
    from eval.bench_vqa import read_samples
    from seal.core.runs import command_line
    from seal.vqa import VQAModel

    samples = read_samples(data, limit)
    vqa = VQAModel.load(model)
    report = run_answer_cost(vqa, samples, cuts, repeats, merger_path, pruners_path,
                             log=lambda line: print(line, flush=True))
    report = {"model": str(model), "data": str(data), "merger": merger_path, "pruners": pruners_path,
              "command": command_line(), **report}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(report["cuts"]))
    print(f"report written to {out}", flush=True)
    return report


def format_table(table: dict[str, dict]) -> str:
    """The summary as a Markdown table (one row per cut)."""
    lines = ["| cut | accuracy (95% CI) | tokens | GFLOPs | GFLOPs after tower | ms min | ms median | "
             "ratio to none (tokens / GFLOPs / after tower / ms min / ms median) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in table.items():
        ratio = e.get("ratio_to_none", {})
        ratios = " / ".join(f"{ratio[k]:.3f}" if k in ratio else "-"
                            for k in ("tokens", "gflops", "gflops_after_tower", "ms_min", "ms_median"))
        lines.append(f"| {name} | {e['accuracy']:.3f} ({e['ci95'][0]:.2f}-{e['ci95'][1]:.2f}) | {e['tokens']:.1f} | "
                     f"{e['gflops']:.4f} | {e['gflops_after_tower']:.4f} | {e.get('ms_min', float('nan')):.2f} | "
                     f"{e.get('ms_median', float('nan')):.2f} | {ratios} |")
    return "\n".join(lines)
