"""The VQA LLM training recipe: tokenizer + tiny LLaVA, SynthVStar examples, the generic loop, export.

``seal train vqa --config configs/train/vqa_tiny.yaml`` runs :func:`run`:

1. train the byte-level BPE tokenizer on :func:`training.tokenizer_corpus.corpus_texts`;
2. build a random tiny LLaVA (``vqa_train.backbone``) around it;
3. render ``synth.n`` scenes of ``synth.split`` (never ``test``) and build their examples
   (:mod:`training.vqa_data`);
4. optimise with :func:`training.loop.train` (``train`` section) on :func:`loss_fn`;
5. export to ``vqa_train.export_dir``: the model + processor (``save_pretrained``, loadable with
   ``VQAModel.load``), ``backbone.json``, the resolved ``config.yaml``, ``run.json`` and
   ``train_log.jsonl``.

``train.out_dir`` keeps the resumable state (``checkpoint/``), the log and the tokenizer/processor
used by the data workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from seal.errors import ConfigError
from training.recipe_common import finish_export, prepare_run
from seal.models.backbone import TinyBackboneConfig
from training.vqa_data import VQADataConfig

if TYPE_CHECKING:
    import torch

    from seal.config import Config


@dataclass
class VQATrainConfig:
    """What the VQA recipe builds and where it exports the trained model."""

    backbone: TinyBackboneConfig = field(default_factory=TinyBackboneConfig)
    """Sizes of the tiny LLaVA (random init, seeded by ``backbone.seed``)."""
    vocab_size: int = 768
    """Upper bound of the tokenizer vocabulary (the corpus saturates near 570 tokens)."""
    corpus_seed: int = 0
    """Seed of the tokenizer corpus (option shuffles, spatial pairs, layout boxes)."""
    data: VQADataConfig = field(default_factory=VQADataConfig)
    """How scenes become examples."""
    export_dir: str = "checkpoints/vqa_tiny"
    """Where the final model, processor, config and training log are written."""
    init_from: str = ""
    """An exported VQA model (``export_dir`` of an earlier run) to start from instead of random
    weights ('' = random init); its tokenizer and sizes must be the ones this config builds."""
    attribute_loss: float = 0.5
    """Weight of the auxiliary per-patch attribute loss on the vision tower
    (:mod:`training.vqa_aux`; needs ``data.attribute_maps``); 0 = answers only."""
    attribute_balanced: bool = False
    """Weigh the object and background cells of that loss equally
    (:func:`search.vsm.losses.attribute_cross_entropy`); the shipped model used plain cross-entropy."""
    checker_kinds: list[str] | None = None
    """A recipe that trains a hit checker names the attribute kinds it taught: the export then
    holds the checker profile ``verifier.yaml`` (:mod:`seal.vqa.checker`) with these kinds, the
    ``vwm`` section's crop (``crop_scale``, ``min_context_px``: the crops it trained on) and
    ``checker_noun_kinds``; None = no profile (an answering model, asked with the defaults)."""
    checker_noun_kinds: list[str] = field(default_factory=list)
    """The profile's ``noun_kinds`` (the kinds asked about "the dotted object")."""

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"vqa_train.vocab_size: expected >= 300, found {self.vocab_size}")
        if not self.export_dir:
            raise ConfigError("vqa_train.export_dir: expected a directory, found an empty string")
        if self.checker_kinds is not None or self.checker_noun_kinds:
            from seal.vqa.verifier import VerifierConfig

            VerifierConfig(kinds=self.checker_kinds, noun_kinds=list(self.checker_noun_kinds))  # raises on unknown kinds
            if self.checker_kinds is None:
                raise ConfigError("vqa_train.checker_noun_kinds: needs vqa_train.checker_kinds")
        if self.attribute_loss < 0 or (self.attribute_loss > 0 and not self.data.attribute_maps):
            raise ConfigError(f"vqa_train.attribute_loss: expected >= 0, and data.attribute_maps on when > 0; "
                              f"found {self.attribute_loss} / {self.data.attribute_maps}")


def build(cfg: VQATrainConfig):
    """``(model, processor)``: the tokenizer trained on the corpus and a random tiny LLaVA around it."""
    from seal.models.backbone import build_tiny_llava
    from seal.models.tokenizer import train_tokenizer
    from training.tokenizer_corpus import corpus_texts

    tokenizer = train_tokenizer(corpus_texts(cfg.corpus_seed), vocab_size=cfg.vocab_size)
    return build_tiny_llava(cfg.backbone, tokenizer)


def warm_start(model, processor, path: str) -> None:
    """Copy the weights of the exported VQA model at ``path`` into ``model`` (strict).

    Raises:
        InputError: the checkpoint cannot be read, its tokenizer differs from ``processor``'s, or
            its weights do not fit ``model``.
    """
    from seal.errors import InputError
    from seal.models.backbone import load_llava

    old, old_processor = load_llava(path)
    if old_processor.tokenizer.get_vocab() != processor.tokenizer.get_vocab():
        raise InputError("vqa_train.init_from: the checkpoint's tokenizer differs from the one this config trains",
                         path)
    try:
        model.load_state_dict(old.state_dict(), strict=True)
    except RuntimeError as exc:
        raise InputError(f"vqa_train.init_from: the weights do not fit vqa_train.backbone "
                         f"({' '.join(str(exc).split())[:300]})", path) from None


def make_loss_fn(attribute_weight: float = 0.0):
    """``loss_fn(model, batch)``: :func:`loss_fn`, plus ``attribute_weight`` x the auxiliary attribute
    loss (term ``attributes``) when ``model`` is a :class:`training.vqa_aux.VQATrainModel` and the
    batch holds ``attributes``."""

    def with_aux(model, batch):
        out = loss_fn(model, batch)
        inner = getattr(model, "module", model)  # unwrapped from DistributedDataParallel
        if attribute_weight > 0 and "attributes" in batch and hasattr(inner, "attribute_loss"):
            out["attributes"] = inner.attribute_loss(batch["attributes"])
            out["total"] = out["total"] + attribute_weight * out["attributes"]
        return out

    return with_aux


def loss_fn(model, batch: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """Next-token cross-entropy on the reply tokens, averaged per example, then over the batch.

    Per-example averaging keeps a two-token letter reply as heavy as a thirty-token refusal.

    Args:
        batch: :func:`seal.vqa.collate` output: ``input_ids`` / ``attention_mask`` / ``labels``
            (B, L) int64 (labels -100 on prompt and padding), ``pixel_values`` (N_img, 3, S, S).

    Returns:
        ``total`` (scalar, optimised) and ``token_acc`` (teacher-forced argmax accuracy on reply tokens).
    """
    import torch
    import torch.nn.functional as F

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch.get("pixel_values"), use_cache=False)
    logits = out.logits[:, :-1].float()  # (B, L-1, V): position t predicts token t+1
    targets = batch["labels"][:, 1:]  # (B, L-1)
    mask = targets != -100
    ce = F.cross_entropy(logits.transpose(1, 2), targets.clamp_min(0), reduction="none")  # (B, L-1)
    per_example = (ce * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
    with torch.no_grad():
        token_acc = ((logits.argmax(dim=-1) == targets) & mask).sum() / mask.sum().clamp_min(1)
    return {"total": per_example.mean(), "token_acc": token_acc}


def export(model, processor, cfg: "Config", out_dir: Path, command: list[str] | None = None) -> Path:
    """Write the model + processor, ``backbone.json``, ``config.yaml``, ``run.json`` and the training
    log (copied from ``train.out_dir``) into ``vqa_train.export_dir``."""
    from seal.models.backbone import save_llava

    export_dir = Path(cfg.vqa_train.export_dir)
    save_llava(model.eval(), processor, export_dir, cfg.vqa_train.backbone)
    write_checker_profile(export_dir, cfg)
    return finish_export(export_dir, cfg, out_dir, command)


def write_checker_profile(export_dir: Path, cfg: "Config") -> Path | None:
    """``export_dir/verifier.yaml`` for a checker recipe (``vqa_train.checker_kinds`` set): how the
    exported model must be asked, as it was trained. None (and nothing written) otherwise."""
    import yaml

    from seal.vqa.checker import PROFILE

    vt = cfg.vqa_train
    if vt.checker_kinds is None:
        return None
    profile = {"crop_scale": cfg.vwm.crop_scale, "min_context_px": cfg.vwm.min_context_px,
               "kinds": list(vt.checker_kinds), "noun_kinds": list(vt.checker_noun_kinds)}
    path = export_dir / PROFILE
    header = "# Checker profile written by the VQA recipe (vqa_train.checker_kinds; crops: its vwm section).\n"
    path.write_text(header + yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    return path


def run(cfg: "Config", command: list[str] | None = None, log=print) -> dict:
    """Train the VQA model as configured and export it; returns the loop's summary."""
    from training.loop import train
    from training.vqa_data import build_dataset

    prepare_run(cfg, "VQA")
    out = Path(cfg.train.out_dir)
    model, processor = build(cfg.vqa_train)
    if cfg.vqa_train.init_from:
        warm_start(model, processor, cfg.vqa_train.init_from)
        log(f"initialised from {cfg.vqa_train.init_from}")
    processor_dir = out / "processor"
    processor.save_pretrained(str(processor_dir))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tiny LLaVA: {n_params / 1e6:.2f} M parameters, vocabulary {len(processor.tokenizer)}, "
        f"{cfg.vqa_train.backbone.image_tokens} tokens per image")
    data = build_dataset(processor, cfg.synth, cfg.vqa_train.data, cfg.vwm, processor_dir, log=log)
    trained = model
    if cfg.vqa_train.attribute_loss > 0:
        from training.vqa_aux import VQATrainModel
        from training.vsm_data import attribute_classes

        trained = VQATrainModel(model, attribute_classes(), balanced=cfg.vqa_train.attribute_balanced)
        log(f"auxiliary attribute loss (weight {cfg.vqa_train.attribute_loss}) on the vision tower")
    log(f"{len(data)} examples from {cfg.synth.n} scenes, {len(data.images)} distinct views")

    def batches(epoch: int):
        return data.batches(epoch, cfg.train.batch_size, cfg.train.seed + cfg.vqa_train.data.seed,
                            cfg.vqa_train.data.bucket_batches)

    def on_save(unwrapped, out_dir: Path) -> None:
        path = export(getattr(unwrapped, "llava", unwrapped), processor, cfg, out_dir, command)
        log(f"exported the trained model to {path}")

    summary = train(trained, batches, make_loss_fn(cfg.vqa_train.attribute_loss), cfg.train, on_save=on_save)
    summary.update(examples=len(data), parameters=n_params, export_dir=cfg.vqa_train.export_dir)
    return summary
