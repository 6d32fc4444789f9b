"""``seal train pruners``: the layer pruners' adversarial training (seed 002, phase 3) with the one loop.

:func:`run` on a :class:`training.pruner_config.TrainPrunersConfig`:

1. load the VQA model (``pruner_train.vqa_path``) and freeze it;
2. render ``synth.n`` scenes and build their VQA examples (:mod:`training.vqa_data`, the layout the
   model's manifest records);
3. train three parts' worth of optimizers with :func:`training.loop.train` (``groups``): the
   ``pruners`` heads on ``task_weight * task + adv_weight * adv`` and the :class:`Discriminator` on
   ``real + fake``; with ``pruner_train.merger`` (a trained :class:`seal.vqa.merger.TokenMerger`) a
   third optimizer trains the merger on the pruners' objective + ``merge_sparsity_weight`` x the
   seed's merge-sparsity term (the seed's merger loss is the sparsity term alone; the task and
   adversarial gradients are what tie the merger to the answers). Per batch, the unpruned forward
   (no merger, no gradient) gives the real hidden states, the (merged and) soft-pruned forward
   (:meth:`seal.vqa.pruned_forward.PrunedLM.soft_forward`, straight-through top-k with Gumbel noise)
   the fake ones and the answer's logits;
4. export the heads into ``pruner_train.export_dir`` (``pruners.safetensors``, ``pruners.json``, a
   ``manifest.json`` of kind ``pruners``,
   ``recipe.json``: the command, git revision and the VQA model they were trained against with its
   fingerprint; the training log and summary).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from seal.vqa.pruned_forward import PrunedLM
from seal.vqa.pruners import LayerPruners, keep_counts
from training.pruner_config import PrunerTrainConfig, TrainPrunersConfig

IGNORE_INDEX = -100


class Discriminator(nn.Module):
    """Real (unpruned) vs fake (pruned) from the hidden states of a few LLM layers, each mean-pooled
    over the text positions."""

    def __init__(self, width: int, n_layers: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width * n_layers), nn.Linear(width * n_layers, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, n_layers * D) pooled states -> (B,) logits (positive = real)."""
        return self.net(pooled.float()).squeeze(-1)


class PrunerTrainModel(nn.Module):
    """The frozen LLaVA model with the trained parts: ``pruners`` and ``discriminator``."""

    def __init__(self, llava, pruners: LayerPruners, cfg: PrunerTrainConfig, merger=None) -> None:
        super().__init__()
        self.llava = llava.requires_grad_(False)
        self.pruners = pruners
        self.merger = merger
        """The token merger (a :class:`seal.vqa.merger.TokenMerger`, trained) or None."""
        self.disc_layers = cfg.disc_layers
        width = int(llava.config.text_config.hidden_size)
        self.discriminator = Discriminator(width, len(cfg.disc_layers), cfg.disc_hidden)

    def groups(self, cfg: PrunerTrainConfig):
        """The loop's optimizers: the pruners on loss ``pruners``, the discriminator on ``discriminator``."""
        from training.loop import OptimGroup

        merger = [] if self.merger is None else [OptimGroup("merger", [p for p in self.merger.parameters()
                                                                       if p.requires_grad], "merger", cfg.lr_merger)]
        return merger + [OptimGroup("pruners", list(self.pruners.parameters()), "pruners", cfg.lr_pruners),
                         OptimGroup("discriminator", list(self.discriminator.parameters()), "discriminator",
                                    cfg.lr_discriminator)]

    def pooled(self, layer_hidden: list[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        """(B, n_layers * D): each of ``disc_layers``' (B, L, D) states averaged over ``text`` (B, L)."""
        w = text.unsqueeze(-1).float()
        return torch.cat([(layer_hidden[i] * w).sum(1) / w.sum(1).clamp_min(1) for i in self.disc_layers], dim=-1)


def make_loss_fn(cfg: PrunerTrainConfig) -> Callable[[PrunerTrainModel, dict], dict]:
    """``loss_fn(model, batch)``: the seed's losses on one batch of :func:`seal.vqa.collate` examples.

    Returns ``pruners`` (the pruners' objective), ``discriminator`` (real + fake BCE), with a merger
    ``merger`` (its objective) and the logged ``sparsity``; ``total`` (their sum, logged), and the
    logged ``task`` / ``task_unpruned`` (the answer's cross-entropy with and without pruning), ``adv``,
    ``d_real`` / ``d_fake`` (mean discriminator probabilities of real)."""

    def loss_fn(model: PrunerTrainModel, batch: dict) -> dict:
        plm = PrunedLM(model.llava, model.pruners)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values") if batch.get(k) is not None}
        labels, valid = batch["labels"], batch["attention_mask"].bool()
        with torch.no_grad():
            real = plm.soft_forward(inputs, prune=False)
        real_text = valid & (batch["input_ids"] != plm.image_token_id)
        sparsity = None
        if model.merger is not None:
            inputs, sparsity = _merged(model, batch, cfg.merger_ratio)
            labels, valid = inputs["labels"], inputs["attention_mask"].bool()
        fake = plm.soft_forward(inputs, prompt_mask=(labels == IGNORE_INDEX) & valid, training=model.training)
        real_feats = model.pooled(real.layer_hidden, real_text)
        fake_feats = model.pooled(fake.layer_hidden, valid & (inputs["input_ids"] != plm.image_token_id))
        d_fake = model.discriminator(fake_feats)
        adv = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
        d_real_det = model.discriminator(real_feats.detach())
        d_fake_det = model.discriminator(fake_feats.detach())
        disc = (F.binary_cross_entropy_with_logits(d_real_det, torch.ones_like(d_real_det))
                + F.binary_cross_entropy_with_logits(d_fake_det, torch.zeros_like(d_fake_det)))
        task = answer_loss(fake.logits, labels)
        pruners = cfg.task_weight * task + cfg.adv_weight * adv
        budget = keep_budget(model.pruners, fake, inputs["input_ids"] == plm.image_token_id)
        if budget is not None:
            pruners = pruners + cfg.keep_budget_weight * budget
        with torch.no_grad():
            task_unpruned = answer_loss(real.logits, batch["labels"])
        out = {"total": pruners + disc, "pruners": pruners, "discriminator": disc, "task": task,
               "task_unpruned": task_unpruned, "adv": adv, "d_real": torch.sigmoid(d_real_det).mean(),
               "d_fake": torch.sigmoid(d_fake_det).mean()}
        if budget is not None:
            out["keep_budget"] = budget
        if sparsity is not None:
            out["merger"] = pruners + cfg.merge_sparsity_weight * sparsity
            out["sparsity"] = sparsity
            out["total"] = out["total"] + out["merger"]
        return out

    return loss_fn


def keep_budget(pruners: LayerPruners, fake, vision: torch.Tensor) -> torch.Tensor | None:
    """``train_mask: sigmoid``: the sum over the pruning layers of ``(mean keep probability over the
    vision positions - that layer's keep ratio)^2``; None with the straight-through mask."""
    cfg = pruners.cfg
    if cfg.train_mask != "sigmoid" or not pruners.training:
        return None
    w = vision.float()
    terms = [((torch.sigmoid(fake.keep_logits[layer] / cfg.temperature) * w).sum() / w.sum().clamp_min(1)
              - cfg.ratio_at(layer)).pow(2) for layer in cfg.layers]
    return torch.stack(terms).sum()


def _merged(model: PrunerTrainModel, batch: dict, ratio: float) -> tuple[dict, torch.Tensor]:
    """The batch with its images merged to ``ratio`` of their tokens (gradients reach the merger) and
    the merge-sparsity term."""
    from seal.vqa.merged_forward import merged_batch
    from seal.vqa.merger import merge_sparsity_loss

    image_token_id = int(model.llava.config.image_token_id)
    per_image = int((batch["input_ids"] == image_token_id).sum()) // int(batch["pixel_values"].shape[0])
    tokens = keep_counts([[per_image]], ratio)[0]  # ceil(N * ratio), the proxy's count
    inputs, out = merged_batch(model.llava, model.merger, batch, image_token_id, tokens)
    return inputs, merge_sparsity_loss(out.importance, tokens)


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the reply tokens, averaged per example then over the batch.
    ``logits`` (B, L, V), ``labels`` (B, L) with :data:`IGNORE_INDEX` off the reply."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    ce = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.clamp_min(0), reduction="none")  # (B, L-1)
    return ((ce * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()


def export(pruners: LayerPruners, cfg: TrainPrunersConfig, command: list[str] | None, merger=None) -> Path:
    """Write the heads, ``recipe.json`` and the training log into ``pruner_train.export_dir`` (and the
    trained merger, when one trained along, into its ``merger/`` folder)."""
    from seal.core.manifest import fingerprint, write_manifest
    from seal.vqa.pruners import CONFIG, WEIGHTS
    from training.recipe_common import copy_train_log, recipe_record

    out = pruners.eval().save(cfg.pruner_train.export_dir)
    vqa = cfg.pruner_train.vqa_path
    record = {"trained_against": {"vqa": {"path": vqa, "fingerprint": fingerprint(vqa)}},
              "recipe": recipe_record(command, trained_with={"pruner_train": asdict(cfg.pruner_train),
                                                             "train": asdict(cfg.train), "seed": cfg.seed})}
    (out / "recipe.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    write_manifest(out, "pruners", json.loads((out / CONFIG).read_text(encoding="utf-8")), [WEIGHTS, CONFIG],
                   trained_against={"vqa": vqa}, recipe=record["recipe"])
    if merger is not None:
        from seal.vqa.merger import save_merger

        save_merger(merger.eval(), out / "merger", trained_against={"vqa": vqa}, recipe=record["recipe"])
    copy_train_log(cfg.train.out_dir, out)
    return out


def run(cfg: TrainPrunersConfig, command: list[str] | None = None, log: Callable[[str], None] = print) -> dict:
    """Train the pruners as configured and export them; returns the loop's summary."""
    from seal.core.manifest import MANIFEST, read_manifest
    from seal.core.paths import resolve_dir
    from seal.models.vlm import load_vlm
    from training.loop import seed_everything, train
    from training.recipe_common import prepare_run
    from training.vqa_data import build_dataset
    from vwm.layout import VWMConfig

    pt = cfg.pruner_train
    prepare_run(cfg.synth, cfg.train, "pruners")
    vqa_dir = resolve_dir(pt.vqa_path, "pruner_train.vqa_path")
    llava, processor = load_vlm(vqa_dir)
    vwm = cfg.vwm
    if (Path(vqa_dir) / MANIFEST).is_file() and read_manifest(vqa_dir, "vqa").config.get("vwm"):
        vwm = VWMConfig(**read_manifest(vqa_dir, "vqa").config["vwm"])
    out = Path(cfg.train.out_dir)
    processor_dir = out / "processor"
    processor.save_pretrained(str(processor_dir))
    data = build_dataset(processor, cfg.synth, pt.data, vwm, processor_dir, cfg.seed, log=log)
    log(f"{len(data)} examples from {cfg.synth.n} scenes")
    seed_everything(cfg.seed)  # the heads' initialisation
    pruners = LayerPruners(cfg.pruners, int(llava.config.text_config.hidden_size))
    PrunedLM(llava, pruners)  # checks the layers against the model
    merger = None
    if pt.merger:
        from seal.vqa.merger import load_merger

        merger = load_merger(resolve_dir(pt.merger, "pruner_train.merger")).train()
        log(f"the token merger {pt.merger} trains too ({pt.merger_ratio} of each image's tokens): three optimizers")
    model = PrunerTrainModel(llava, pruners, pt, merger)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"pruners at layers {cfg.pruners.layers} keeping {cfg.pruners.keep_ratios}; {n_train / 1e6:.3f} M trained "
        f"parameters (pruners + discriminator), the VQA model frozen")

    def on_save(unwrapped: PrunerTrainModel, _out: Path) -> None:
        log(f"exported the pruners to {export(unwrapped.pruners, cfg, command, unwrapped.merger)}")

    seed_everything(cfg.seed)
    summary = train(model, data.epochs(cfg.train.batch_size, cfg.seed, pt.data.bucket_batches), make_loss_fn(pt),
                    cfg.train, collate=data.batch, on_save=on_save, groups=model.groups(pt))
    (Path(pt.export_dir) / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    summary.update(examples=len(data), trained_parameters=n_train, export_dir=pt.export_dir)
    return summary
