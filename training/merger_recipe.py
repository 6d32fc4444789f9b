"""The token merger's training recipe (seed 002, phase 1): a merger in front of a frozen VQA model.

``seal train merger --recipe tiny`` runs :func:`run` on a :class:`training.merger_config.TrainMergerConfig`:

1. load the frozen VQA model ``merger_train.vqa_path`` (read only; every weight frozen) and build a
   :class:`seal.vqa.merger.TokenMerger` for its tower width (and text width, question-aware);
2. render ``synth.n`` scenes and build their examples with the VQA recipe's data code
   (:func:`training.vqa_data.build_dataset`), keeping those that show an image (``merger_train.views``);
3. optimise the merger alone with :func:`training.loop.train` on :func:`loss_fn`: the VQA task loss
   (the VQA recipe's :func:`training.vqa_recipe.loss_fn`: next-token cross-entropy on the reply) of
   the model reading ``M`` merged tokens per image (:func:`seal.vqa.merged_forward.merged_batch`;
   ``M`` drawn per step from ``merger_train.tokens``) plus ``sparsity_weight`` x the merge-sparsity
   loss; the temperature anneals with the optimizer step (:func:`seal.vqa.merger.anneal_temperature`);
4. export the merger to ``merger_train.export_dir`` (:func:`seal.vqa.merger.save_merger`: weights,
   manifest of kind ``merger`` with its config, ``trained_against.vqa`` the frozen model) with the
   training log.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from training.merger_config import TrainMergerConfig
from training.recipe_common import copy_train_log, prepare_run, recipe_record

if TYPE_CHECKING:
    from seal.vqa.merger import TokenMerger


class MergerTrainModel(nn.Module):
    """The trained merger beside the frozen VQA model (only the merger has ``requires_grad``).

    Buffers ``micro_steps`` (forward passes in training, so the temperature schedule resumes with the
    loop's checkpoint) and the merger's own ``temperature``.
    """

    def __init__(self, llava: nn.Module, merger: "TokenMerger", image_token_id: int, tokens: list[int],
                 grad_accum_steps: int) -> None:
        super().__init__()
        self.llava = llava.requires_grad_(False).eval()
        self.merger = merger
        self.image_token_id = image_token_id
        self.tokens = list(tokens)
        self.grad_accum_steps = grad_accum_steps
        self.register_buffer("micro_steps", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> "MergerTrainModel":
        """Only the merger changes mode; the frozen model stays in eval mode."""
        super().train(mode)
        self.llava.eval()
        return self

    def next_step(self) -> int:
        """Anneal the merger's temperature for the current optimizer step, count the forward pass and
        draw this pass's ``M`` (uniformly from ``tokens``, torch's RNG)."""
        from seal.vqa.merger import anneal_temperature

        cfg = self.merger.cfg
        step = int(self.micro_steps) // self.grad_accum_steps
        self.merger.set_temperature(anneal_temperature(step, cfg.temperature_start, cfg.temperature_end,
                                                       cfg.anneal_steps))
        self.micro_steps += 1
        return self.tokens[int(torch.randint(len(self.tokens), ()))]


def make_loss_fn(task_weight: float, sparsity_weight: float):
    """``loss_fn(model, batch)``: ``task_weight`` x the VQA task loss of the model reading the merged
    tokens + ``sparsity_weight`` x the merge-sparsity loss.

    ``batch``: :func:`seal.vqa.examples.collate` output (every row with >= 1 image). Returns ``total``,
    ``task``, ``sparsity``, ``token_acc``, ``temperature`` and ``tokens`` (the drawn ``M``)."""

    def loss_fn(model: MergerTrainModel, batch: dict) -> dict:
        from seal.vqa.merged_forward import merged_batch
        from seal.vqa.merger import merge_sparsity_loss
        from training.vqa_recipe import loss_fn as task_loss

        inner = getattr(model, "module", model)
        tokens = inner.next_step()
        inputs, out = merged_batch(inner.llava, inner.merger, batch, inner.image_token_id, tokens)
        task = task_loss(inner.llava, inputs)
        sparsity = merge_sparsity_loss(out.importance, tokens)
        total = task_weight * task["total"] + sparsity_weight * sparsity
        return {"total": total, "task": task["total"].detach(), "sparsity": sparsity.detach(),
                "token_acc": task["token_acc"], "temperature": inner.merger.temperature.detach().clone(),
                "tokens": torch.tensor(float(tokens))}

    return loss_fn


def build_merger(cfg: TrainMergerConfig, llava: Any) -> "TokenMerger":
    """The merger of ``cfg.merger`` with its widths set from ``llava`` (seeded by the caller)."""
    from seal.vqa.merged_forward import tower_features
    from seal.vqa.merger import TokenMerger

    size = int(llava.config.vision_config.image_size)
    with torch.no_grad():
        vision_dim = int(tower_features(llava, torch.zeros(1, 3, size, size)).shape[-1])
    text_dim = int(llava.config.text_config.hidden_size)
    return TokenMerger(replace(cfg.merger, vision_dim=vision_dim, text_dim=text_dim))


def _dataset(cfg: TrainMergerConfig, processor, processor_dir: Path, log):
    """The VQA recipe's examples of ``synth.n`` scenes that show an image of ``merger_train.views``."""
    from training.vqa_data import VQADataset, build_dataset

    data = build_dataset(processor, cfg.synth, cfg.data, cfg.vwm, processor_dir, cfg.seed, log=log)
    views = set(cfg.merger_train.views)
    kept = [ex for ex in data.examples if ex["view"] in views and ex["image_ids"]]
    if not kept:
        from seal.core.errors import ConfigError

        raise ConfigError(f"merger_train.views: the {len(data)} examples hold none showing {sorted(views)}")
    log(f"{len(kept)} of {len(data)} examples show an image ({', '.join(sorted(views))})")
    return VQADataset(kept, data.images, data.pad_token_id, None)


def run(cfg: TrainMergerConfig, command: list[str] | None = None, log=print) -> dict:
    """Train the merger as configured and export it; returns the loop's summary."""
    from seal.core.manifest import MANIFEST, read_manifest
    from seal.core.paths import resolve_dir
    from seal.models.vlm import image_token_id, load_vlm
    from seal.vqa.merger import save_merger
    from seal.vqa.token_keep import check_family
    from training.distributed import main_process_first
    from training.loop import seed_everything, train

    mt = cfg.merger_train
    prepare_run(cfg.synth, cfg.train, "merger")
    out = Path(cfg.train.out_dir)
    vqa_path = resolve_dir(mt.vqa_path, "merger_train.vqa_path")
    if (vqa_path / MANIFEST).is_file():  # a seal checkpoint must be a VQA model; a plain llava folder is taken as is
        read_manifest(vqa_path, "vqa")
    llava, processor = load_vlm(vqa_path)
    check_family(llava)
    processor_dir = out / "processor"
    processor.save_pretrained(str(processor_dir))
    seed_everything(cfg.seed)  # the merger's initialisation
    merger = build_merger(cfg, llava)
    model = MergerTrainModel(llava, merger, image_token_id(processor), mt.tokens, cfg.train.grad_accum_steps)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"merger ({merger.cfg.variant}): {n_train / 1e3:.1f} k parameters trained; {mt.vqa_path} frozen")
    with main_process_first():
        data = _dataset(cfg, processor, processor_dir, log)

    def on_save(unwrapped: MergerTrainModel, out_dir: Path) -> None:
        recipe = recipe_record(command, synth=asdict(cfg.synth), tokens=mt.tokens)
        save_merger(unwrapped.merger.eval(), mt.export_dir, trained_against={"vqa": str(vqa_path)}, recipe=recipe)
        copy_train_log(out_dir, mt.export_dir)
        log(f"exported the trained merger to {mt.export_dir}")

    seed_everything(cfg.seed)
    summary = train(model, data.epochs(cfg.train.batch_size, cfg.seed, cfg.data.bucket_batches),
                    make_loss_fn(mt.task_weight, mt.sparsity_weight), cfg.train, collate=data.batch,
                    on_save=on_save)
    summary.update(examples=len(data), trained_parameters=n_train, export_dir=mt.export_dir)
    return summary
