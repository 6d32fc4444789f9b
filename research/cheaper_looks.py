"""Accuracy against the vision tokens the VQA model reads per image, for every token cut of a
``seal experiment`` pruning sweep (issue 28): the learned cuts beside the stride / topk_norm proxies.

    python -m research.cheaper_looks --experiment runs/exp28 --out docs/figures/cheaper_looks.png

The experiment's totals are dominated by the search's patches, which no cut touches; this plots the
share of each image's tokens the VQA model reads instead: ``ratio`` for stride, topk_norm and the
merger (``ceil(N * ratio)``), the mean over the LLM's layers for the pruners
(:meth:`seal.vqa.VQAModel.vision_tokens_read`), and for the entropy cascade the mean share its
selection keeps of the suite's full-vision global views (measured here with the ledger's own count,
:class:`vwm.budget.VisionBudget`). Writes the PNG and a CSV beside it.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path


def entropy_share(suite: Path, alpha: float, limit: int) -> float:
    """Mean share of the vision tokens the entropy cascade (budget mode, ``alpha``) keeps of the
    shipped VQA model's full-vision global views of the first ``limit`` images of ``suite``."""
    from PIL import Image

    from eval.readers.vstar import read_vstar_folder
    from seal.agent.views import ImageViews
    from seal.vqa import VQAModel
    from vwm.budget import VisionBudgetConfig
    from vwm.entropy import EntropyConfig

    vqa = VQAModel.load("checkpoints/vqa_tiny")
    full = VisionBudgetConfig()
    cut = VisionBudgetConfig(pruning_mode="entropy", entropy=EntropyConfig(mode="budget", alpha=alpha))
    shares = []
    for sample in list(read_vstar_folder(suite))[:limit]:
        image = Image.open(sample.image).convert("RGB")
        n = ImageViews(image, full, vqa.processor, vwm_config=vqa.vwm_config).tokens("full")
        shares.append(ImageViews(image, cut, vqa.processor, vwm_config=vqa.vwm_config).tokens("full") / n)
    return sum(shares) / len(shares)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--suites-root", type=Path, default=Path("runs"), help="where the suites' folders are")
    p.add_argument("--limit", type=int, default=20, help="images per suite for the entropy share")
    args = p.parse_args()
    rows = [r for r in csv.DictReader((args.experiment / "main_table.csv").open(newline=""))
            if r["policy"] == "always_full"]
    rows += [r for r in csv.DictReader((args.experiment / "sweeps.csv").open(newline="")) if r["sweep"] == "pruning"]
    points = []
    for r in rows:
        m = re.fullmatch(r"sweep_pruning:([\w+]+)_r([0-9.]+)", r["policy"])
        method, ratio = (m.group(1), float(m.group(2))) if m else ("all tokens", 1.0)
        share = {"pruners": (1 + 3 * ratio) / 4,  # the shipped heads prune before layer 1 of 4
                 "merger+pruners": ratio * (1 + 3 * 0.5) / 4,  # then keep their trained half
                 "entropy": None}.get(method, ratio)
        if method == "entropy":
            share = entropy_share(args.suites_root / r["suite"], ratio, args.limit)
        points.append({"suite": r["suite"], "method": method, "ratio": ratio, "token_share": round(share, 3),
                       "accuracy": float(r["accuracy"]), "ci_low": float(r["accuracy_ci_low"]),
                       "ci_high": float(r["accuracy_ci_high"]), "n": r["n"]})
    suites = sorted({q["suite"] for q in points}, reverse=True)
    fig, axes = plt.subplots(1, len(suites), figsize=(6 * len(suites), 4.5), squeeze=False)
    for ax, suite in zip(axes[0], suites):
        for k, method in enumerate(sorted({q["method"] for q in points})):
            mine = sorted((q for q in points if q["suite"] == suite and q["method"] == method),
                          key=lambda q: q["token_share"])
            xs = [q["token_share"] + 0.006 * (k - 2) for q in mine]  # a small offset keeps the bars apart
            ys = [q["accuracy"] for q in mine]
            err = [[q["accuracy"] - q["ci_low"] for q in mine], [q["ci_high"] - q["accuracy"] for q in mine]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=method,
                        linestyle="--" if method in ("stride", "topk_norm") else "-")
        ax.set(title=f"{suite} (always_full, n = {mine[0]['n'] if mine else '?'})", ylim=(0, 1.05),
               xlabel="share of each image's vision tokens the VQA model reads", ylabel="accuracy (95% CI)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    with args.out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(points[0]))
        writer.writeheader()
        writer.writerows(points)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
