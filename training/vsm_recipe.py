"""The V* search model (VSM) training recipe: tiny LLaVA + LoRA + ``<LOC>`` + decoders, the one loop, export.

``seal train vsm --recipe tiny`` runs :func:`run` on a :class:`training.vsm_config.TrainVSMConfig`:

1. train the byte-level BPE tokenizer on :func:`training.tokenizer_corpus.corpus_texts` (as the
   VQA recipe does) and build a random tiny LLaVA (``vsm_train.backbone``) around it;
2. wrap it as a :class:`search.vsm.model.VSMModel` (``vsm_train.vsm``: LoRA, ``<LOC>`` rows,
   ``modules_to_save``, decoders);
3. render ``synth.n`` scenes of ``synth.split`` (never ``test``) and cut their patches and rows
   (:mod:`training.vsm_data`), cached under ``vsm_train.data.cache_dir``;
4. optionally pretrain the detector stem alone (``vsm_train.stem_pretrain``);
5. optimise :class:`search.vsm.losses.VSMCriterion` (``vsm_train.loss``) with
   :func:`training.loop.train` (``train`` section);
6. export to ``vsm_train.export_dir`` with ``VSMModel.save_pretrained`` (its manifest: kind ``vsm``,
   config = ``vsm_config.json``'s content, the search defaults, the recipe); with
   ``vsm_train.crop_matcher``, train the crop matcher into its ``crop_matcher/`` folder and write the
   export again, the matcher named as its second stage.

Every random choice derives from the command's ``seed``; ``synth.seed`` picks the scenes.

On a real base (``seal train vsm --base DIR --data FILE``, recipe ``lora``) step 1 loads the base
with its own tokenizer (``<LOC>`` added) and step 3 cuts the user's annotations (COCO or V*Bench,
:mod:`training.data`, the ``data`` section) into patches and rows, with absent-target negatives; the
export is the same adapter checkpoint (``backbone/`` + ``adapter/`` + decoders), its manifest's
recipe naming the base (path, ``model_type``, fingerprint) and the data.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from search.vsm.localizer import CROP_MATCHER_DIR
from seal.core.manifest import MANIFEST
from training.recipe_common import copy_train_log, data_record, prepare_run, recipe_record
from training.vsm_config import TrainVSMConfig, VSMTrainConfig

if TYPE_CHECKING:
    import torch

    from search.vsm.config import VSMLossConfig


def build(cfg: VSMTrainConfig, seed: int):
    """A fresh :class:`VSMModel`: tokenizer trained on the corpus of ``seed``, random tiny LLaVA, new
    adapter and heads (their init seeded by ``cfg.backbone.seed`` / ``cfg.vsm.seed``)."""
    from search.vsm.model import VSMModel
    from seal.models.backbone import build_tiny_llava
    from seal.models.tokenizer import train_tokenizer
    from training.tokenizer_corpus import corpus_texts

    texts = corpus_texts(seed, spatial_pairs=cfg.corpus_spatial_pairs, layouts=cfg.corpus_layouts)
    tokenizer = train_tokenizer(texts, vocab_size=cfg.vocab_size)
    llava, processor = build_tiny_llava(cfg.backbone, tokenizer)
    return VSMModel.build(llava, processor, cfg.vsm)


def build_on_base(cfg: VSMTrainConfig):
    """A :class:`VSMModel` on the real VLM at ``cfg.base`` (any family :mod:`search.vsm.families`
    supports; its tokenizer and chat template kept, ``<LOC>`` added)."""
    from search.vsm.model import VSMModel
    from seal.models.vlm import load_vlm

    base, processor = load_vlm(cfg.base, dtype=cfg.base_dtype)
    return VSMModel.build(base, processor, cfg.vsm)


def warm_start(model, path: str) -> list[str]:
    """Copy an exported VSM's weights into ``model``; returns the model's module prefixes left fresh.

    Raises:
        InputError: the checkpoint cannot be read, has tensors ``model`` lacks, or lacks tensors other
            than whole head modules that ``model``'s config adds.
    """
    from search.vsm.model import VSMModel
    from seal.core.errors import InputError

    old = VSMModel.from_pretrained(path, trainable=True)
    result = model.load_state_dict(old.state_dict(), strict=False)
    added = set(model._head_modules()) - set(old._head_modules())
    missing = [k for k in result.missing_keys if k.split(".", 1)[0] not in added]
    if result.unexpected_keys or missing:
        raise InputError(f"vsm_train.init_from: the checkpoint does not fit this config (unexpected "
                         f"{result.unexpected_keys[:5]}, missing {missing[:5]})", path)
    return sorted(added)


def make_loss_fn(loss_cfg: VSMLossConfig):
    """``loss_fn(model, batch)`` for :func:`training.loop.train`.

    Each patch of the batch is encoded once (``pixel_values`` (P, 3, S, S)); its rows share the
    features through ``patch_index`` (B,). Returns the criterion's ``total`` and unweighted terms,
    plus ``box_acc``: the fraction of box-supervised rows whose best query is on the right side of
    0.5 (target there or not).
    """
    import torch

    from search.vsm.losses import VSMCriterion

    criterion = VSMCriterion(loss_cfg)

    def loss_fn(model, batch: dict) -> dict[str, "torch.Tensor"]:
        features = model.encode_images(batch["pixel_values"]).rows(batch["patch_index"])
        out = model(batch["input_ids"], batch["attention_mask"], features=features, labels=batch["labels"])
        targets = batch["targets"]
        losses = criterion(out, targets)
        with torch.no_grad():
            rows = targets.rows(targets.boxes_valid)
            present = torch.tensor([len(targets.boxes[r]) > 0 for r in rows.tolist()])
            said = out.box_logits[rows].max(dim=1).values > 0
            losses["box_acc"] = (said == present).float().mean() if len(rows) else torch.zeros(())
        return losses

    return loss_fn


def export(model, cfg: TrainVSMConfig, out_dir: Path, command: list[str] | None = None) -> Path:
    """``save_pretrained`` into ``vsm_train.export_dir`` with its manifest (the model's own config, its
    search defaults, its second stage when trained, the recipe) and the training log."""
    vt = cfg.vsm_train
    export_dir = Path(vt.export_dir)
    for stale in ("backbone", "adapter"):
        if (export_dir / stale).exists():
            shutil.rmtree(export_dir / stale)
    stage = CROP_MATCHER_DIR if vt.crop_matcher and (export_dir / CROP_MATCHER_DIR / MANIFEST).is_file() else None
    extra = {}
    if vt.base:
        from training.lora import base_record

        extra["base"] = base_record(vt.base)
    if cfg.data.path:
        extra["data"] = data_record(cfg.data.path, cfg.data.image_root)
    model.eval().save_pretrained(export_dir, search_defaults=dict(vt.search_defaults) or None, second_stage=stage,
                                 recipe=recipe_record(command, **extra))
    copy_train_log(out_dir, export_dir)
    return export_dir


def _dataset(cfg: TrainVSMConfig, model, log):
    """The user's annotations (``data.path``) or the rendered SynthVStar scenes, cut for ``model``."""
    vt = cfg.vsm_train
    if cfg.data.path:
        from training.data.load import load_detections
        from training.data.vsm_rows import build_detection_dataset

        return build_detection_dataset(load_detections(cfg.data, log=log), vt.data, cfg.data, cfg.search,
                                       model.input_size, model.heatmap_size, model.fill_color, cfg.seed, log=log)
    from training.vsm_data import build_dataset

    return build_dataset(cfg.synth, vt.data, cfg.search, model.input_size, model.heatmap_size, model.fill_color,
                         cfg.seed, log=log)


def run(cfg: TrainVSMConfig, command: list[str] | None = None, log=print) -> dict:
    """Train the VSM as configured and export it; returns the loop's summary."""
    from training.distributed import main_process_first, process_index
    from training.loop import seed_everything, train
    from training.vsm_data import make_collate

    vt = cfg.vsm_train
    prepare_run(cfg.synth, cfg.train, "VSM", synthetic=not cfg.data.path)
    if vt.base:
        seed_everything(cfg.seed)  # the adapter's initialisation
        model = build_on_base(vt)
        log(f"search model on {vt.base} (its tokenizer, LoRA rank {vt.vsm.lora_r} on {list(vt.vsm.lora_targets)})")
    else:
        model = build(vt, cfg.seed)
    if vt.init_from:
        fresh = warm_start(model, vt.init_from)
        log(f"initialised from {vt.init_from}; fresh modules: {fresh or 'none'}")
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"VSM: {n_params / 1e6:.2f} M parameters ({n_train / 1e6:.2f} M trained), input {model.input_size} px, "
        f"{model.image_tokens} tokens per patch, heatmap {model.heatmap_size}")
    with main_process_first():  # under accelerate launch: the first process writes the data cache, then the rest
        data = _dataset(cfg, model, log)
    positives = sum(len(e.boxes) > 0 for e in data.examples)
    log(f"{len(data)} rows ({positives} with a legible target) on {len(data.patches)} patches "
        f"from {cfg.data.path or f'{cfg.synth.n} scenes'}")
    if vt.stem_pretrain is not None:
        from training.stem_pretrain import pretrain_stem

        pretrain_stem(model, data.patches, data.attributes, vt.stem_pretrain, cfg.seed, log=log)

    def on_save(trained, out_dir: Path) -> None:
        if (Path(vt.export_dir) / CROP_MATCHER_DIR).exists():
            shutil.rmtree(Path(vt.export_dir) / CROP_MATCHER_DIR)  # an earlier run's: not this model's stage
        path = export(trained, cfg, out_dir, command)
        log(f"exported the trained model to {path}")

    seed_everything(cfg.seed)
    summary = train(model, data.epochs(cfg.train.batch_size, cfg.seed), make_loss_fn(vt.loss), cfg.train,
                    collate=make_collate(model, data), on_save=on_save)
    summary.update(rows=len(data), patches=len(data.patches), parameters=n_params, export_dir=vt.export_dir)
    if vt.crop_matcher:
        from training.crop_matcher_recipe import train_matcher

        summary["crop_matcher"] = train_matcher(cfg.synth, cfg.crop_matcher_train, cfg.seed,
                                                Path(vt.export_dir) / CROP_MATCHER_DIR, command, log)
        if process_index() == 0:  # under accelerate launch: one process writes the export
            export(model, cfg, Path(cfg.train.out_dir), command)  # its manifest names the matcher now
    return summary
