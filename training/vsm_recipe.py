"""The V* search model (VSM) training recipe: tiny LLaVA + LoRA + ``<LOC>`` + decoders, the generic loop, export.

``seal train vsm --config configs/train/vsm_tiny.yaml`` runs :func:`run`:

1. train the byte-level BPE tokenizer on :func:`training.tokenizer_corpus.corpus_texts` (as the
   VQA recipe does) and build a random tiny LLaVA (``vsm_train.backbone``) around it;
2. wrap it as a :class:`search.vsm.model.VSMModel` (``vsm_train.vsm``: LoRA, ``<LOC>`` rows,
   ``modules_to_save``, decoders);
3. render ``synth.n`` scenes of ``synth.split`` (never ``test``) and cut their patches and rows
   (:mod:`training.vsm_data`), cached under ``vsm_train.data.cache_dir``;
4. optimise :class:`search.vsm.losses.VSMCriterion` (``vsm_train.loss``) with
   :func:`training.loop.train` (``train`` section);
5. export to ``vsm_train.export_dir`` with ``VSMModel.save_pretrained`` (loadable with
   ``search.vsm.localizer.load_vsm_localizer``), plus ``config.yaml``, ``run.json`` and
   ``train_log.jsonl``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.vsm.config import VSMConfig, VSMLossConfig
from search.vsm.localizer import CROP_MATCHER_DIR as CROP_CHECK_DIR
from seal.core.errors import ConfigError
from training.recipe_common import finish_export, prepare_run
from seal.models.backbone import TinyBackboneConfig
from training.stem_pretrain import StemPretrainConfig
from training.vsm_data import VSMDataConfig

if TYPE_CHECKING:
    import torch

    from seal.config import Config


def _vsm_backbone() -> TinyBackboneConfig:
    """256 px input in 16 px patches: 256 image tokens, and a level-2 search patch of a 2400 px
    SynthVStar image shows its small targets at ~12-22 px (legible) instead of ~6-11 px at 128 px."""
    return TinyBackboneConfig(text_hidden=128, text_layers=2, text_heads=4, text_intermediate=256,
                              max_positions=512, image_size=256, patch_size=16, vision_hidden=128,
                              vision_layers=3, vision_heads=4, vision_intermediate=256)


def _vsm_heads() -> VSMConfig:
    return VSMConfig(heatmap_mlp_dim=256, box_mlp_dim=256, modules_to_save=("vision_tower", "multi_modal_projector"),
                     detector_stem=True, box_decoder="patches", lora_r=16, lora_alpha=32,
                     lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))


@dataclass
class VSMTrainConfig:
    """What the VSM recipe builds and where it exports the trained model."""

    backbone: TinyBackboneConfig = field(default_factory=_vsm_backbone)
    """Sizes of the tiny LLaVA (random init, seeded by ``backbone.seed``)."""
    vocab_size: int = 768
    """Upper bound of the tokenizer vocabulary (same corpus as the VQA tokenizer)."""
    corpus_seed: int = 0
    corpus_spatial_pairs: int = 400
    corpus_layouts: int = 200
    """Size of the tokenizer corpus (:func:`training.tokenizer_corpus.corpus_texts`; smaller = faster, for tests)."""
    vsm: VSMConfig = field(default_factory=_vsm_heads)
    """Heads and adapter. ``modules_to_save`` trains the (random) vision tower and projector in full:
    a frozen random tower cannot learn colours, shapes and patterns."""
    loss: VSMLossConfig = field(default_factory=VSMLossConfig)
    data: VSMDataConfig = field(default_factory=VSMDataConfig)
    export_dir: str = "checkpoints/vsm_tiny"
    """Where the final model, config and training log are written."""
    init_from: str = ""
    """An exported VSM checkpoint to start from ('' = random init): its weights are copied into the
    model this config builds; every one must fit, and only modules this config adds (e.g.
    ``vsm.phrase_query``'s projection) may be missing from it (they start fresh and are logged)."""
    crop_check: bool = False
    """Last stage: train the search model's crop matcher (:mod:`training.crop_check_recipe`, the
    ``crop_check_train`` section, whose ``train`` must be set) into ``export_dir/crop_check``, so one
    command yields the whole search model."""
    stem_pretrain: StemPretrainConfig = field(default_factory=StemPretrainConfig)
    """Stand-alone training of the detector stem on the attribute maps before the main loop
    (:mod:`training.stem_pretrain`; ``steps: 0`` = off)."""
    search_profile: dict[str, Any] = field(default_factory=dict)
    """``search`` fields written with the model as its profile ``search.yaml`` (:mod:`search.profile`:
    the stop thresholds its scores were tuned for, chosen on the validation split), layered under
    every user config when it searches; {} = none (the defaults apply)."""

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"vsm_train.vocab_size: expected >= 300, found {self.vocab_size}")
        if not self.export_dir:
            raise ConfigError("vsm_train.export_dir: expected a directory, found an empty string")
        if self.data.attribute_maps and not self.vsm.attribute_classes:
            from training.vsm_data import attribute_classes

            self.vsm.attribute_classes = attribute_classes()  # the head the maps supervise
        if self.stem_pretrain.steps and not (self.data.attribute_maps and self.vsm.detector_stem):
            raise ConfigError("vsm_train.stem_pretrain.steps > 0 needs vsm.detector_stem and "
                              "vsm_train.data.attribute_maps: true (the stem learns the attribute maps)")
        if self.search_profile:
            from search.config import SearchConfig
            from seal.core.config import from_dict

            from_dict(SearchConfig, self.search_profile, prefix="vsm_train.search_profile.")  # checked now, not at export
        if self.vsm.attribute_classes and not self.data.attribute_maps:
            raise ConfigError("vsm.attribute_classes is set but vsm_train.data.attribute_maps is off: the "
                              "attribute head would have no targets")


def build(cfg: VSMTrainConfig):
    """A fresh :class:`VSMModel`: tokenizer trained on the corpus, random tiny LLaVA, new adapter and heads."""
    from search.vsm.model import VSMModel
    from seal.models.backbone import build_tiny_llava
    from seal.models.tokenizer import train_tokenizer
    from training.tokenizer_corpus import corpus_texts

    texts = corpus_texts(cfg.corpus_seed, spatial_pairs=cfg.corpus_spatial_pairs, layouts=cfg.corpus_layouts)
    tokenizer = train_tokenizer(texts, vocab_size=cfg.vocab_size)
    llava, processor = build_tiny_llava(cfg.backbone, tokenizer)
    return VSMModel.build(llava, processor, cfg.vsm)


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


def export(model, cfg: "Config", out_dir: Path, command: list[str] | None = None) -> Path:
    """``save_pretrained`` into ``vsm_train.export_dir`` + ``config.yaml`` / ``run.json`` / training log."""

    export_dir = Path(cfg.vsm_train.export_dir)
    if (export_dir / "backbone").exists():
        shutil.rmtree(export_dir / "backbone")
    if (export_dir / "adapter").exists():
        shutil.rmtree(export_dir / "adapter")
    model.eval().save_pretrained(export_dir)
    if cfg.vsm_train.search_profile:
        from search.profile import write_profile

        write_profile(export_dir, cfg.vsm_train.search_profile)
    return finish_export(export_dir, cfg, out_dir, command)


def run(cfg: "Config", command: list[str] | None = None, log=print) -> dict:
    """Train the VSM as configured and export it; returns the loop's summary."""
    from training.loop import train
    from training.vsm_data import build_dataset, make_collate

    prepare_run(cfg, "VSM")
    if cfg.vsm_train.crop_check and cfg.crop_check_train.train is None:
        raise ConfigError("vsm_train.crop_check: set crop_check_train.train (the matcher's own steps, batch and "
                          "learning rate; the root train section is the VSM's)")
    model = build(cfg.vsm_train)
    if cfg.vsm_train.init_from:
        fresh = warm_start(model, cfg.vsm_train.init_from)
        log(f"initialised from {cfg.vsm_train.init_from}; fresh modules: {fresh or 'none'}")
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"VSM: {n_params / 1e6:.2f} M parameters ({n_train / 1e6:.2f} M trained), input {model.input_size} px, "
        f"{model.image_tokens} tokens per patch, heatmap {model.heatmap_size}")
    data = build_dataset(cfg.synth, cfg.vsm_train.data, cfg.search, model.input_size, model.heatmap_size,
                         model.fill_color, log=log)
    positives = sum(len(e.boxes) > 0 for e in data.examples)
    log(f"{len(data)} rows ({positives} with a legible target) on {len(data.patches)} patches "
        f"from {cfg.synth.n} scenes")
    if cfg.vsm_train.stem_pretrain.steps:
        from training.stem_pretrain import pretrain_stem

        pretrain_stem(model, data.patches, data.attributes, cfg.vsm_train.stem_pretrain, Path(cfg.train.out_dir),
                      log=log)
    collate = make_collate(model, data.patches, data.attributes)

    def batches(epoch: int):
        return data.batches(epoch, cfg.train.batch_size, cfg.train.seed + cfg.vsm_train.data.seed, collate)

    def on_save(trained, out_dir: Path) -> None:
        path = export(trained, cfg, out_dir, command)
        log(f"exported the trained model to {path}")

    summary = train(model, batches, make_loss_fn(cfg.vsm_train.loss), cfg.train, on_save=on_save)
    summary.update(rows=len(data), patches=len(data.patches), parameters=n_params,
                   export_dir=cfg.vsm_train.export_dir)
    if cfg.vsm_train.crop_check:
        from dataclasses import replace

        from training.crop_check_recipe import run as train_crop_check

        stage = replace(cfg.crop_check_train, export_dir=str(Path(cfg.vsm_train.export_dir) / CROP_CHECK_DIR))
        summary["crop_check"] = train_crop_check(replace(cfg, crop_check_train=stage), command, log)
    return summary
