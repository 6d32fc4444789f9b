"""The VQA LLM training recipe: tokenizer + tiny LLaVA, SynthVStar examples, the one loop, export.

``seal train vqa --recipe tiny`` runs :func:`run` on a :class:`training.vqa_config.TrainVQAConfig`:

1. train the byte-level BPE tokenizer on :func:`training.tokenizer_corpus.corpus_texts`;
2. build a random tiny LLaVA (``vqa_train.backbone``) around it (or copy ``vqa_train.init_from``);
3. render ``synth.n`` scenes of ``synth.split`` (never ``test``) and build their examples
   (:mod:`training.vqa_data`);
4. optimise with :func:`training.loop.train` (``train`` section) on :func:`loss_fn`;
5. export to ``vqa_train.export_dir``: the model + processor (``save_pretrained``, loadable with
   ``VQAModel.load``), ``backbone.json``, the training log and the manifest (kind ``vqa``, config
   ``{"vwm": the layout it was trained on, "hit_check": how it must be asked when it checks hits}``).

A fine-tune of a real base (``seal train vqa --base DIR --data FILE``, recipe ``lora``) replaces
steps 1-3 and 5: the base is loaded with its own tokenizer and processor, wrapped by a LoRA adapter
(:mod:`training.lora`, the ``lora`` section), trained on the user's conversations
(:mod:`training.data`, the ``data`` section), and exported as the adapter alone
(:func:`export_adapter`; ``seal merge-lora --vqa`` folds it into a plain checkpoint). The user's
data may also train the tiny model (``--data`` without ``--base``).

``train.out_dir`` keeps the run: its resolved config and run record, the resumable state
(``checkpoint/``), the log and the tokenizer/processor used by the data workers.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.recipe_common import copy_train_log, data_record, prepare_run, recipe_record
from training.vqa_config import TrainVQAConfig, VQATrainConfig

if TYPE_CHECKING:
    import torch


def build(cfg: VQATrainConfig, seed: int):
    """``(model, processor)``: the tokenizer trained on the corpus of ``seed`` and a random tiny LLaVA
    around it (its init seeded by ``cfg.backbone.seed``)."""
    from seal.models.backbone import build_tiny_llava
    from seal.models.tokenizer import train_tokenizer
    from training.tokenizer_corpus import corpus_texts

    tokenizer = train_tokenizer(corpus_texts(seed), vocab_size=cfg.vocab_size)
    return build_tiny_llava(cfg.backbone, tokenizer)


def warm_start(model, processor, path: str) -> None:
    """Copy the weights of the exported VQA model at ``path`` into ``model`` (strict).

    Raises:
        InputError: the checkpoint cannot be read, its tokenizer differs from ``processor``'s, or
            its weights do not fit ``model``.
    """
    from seal.core.errors import InputError
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
            (B, L) int64 (labels -100 on prompt and padding), ``pixel_values`` (N_img, 3, S, S) and
            whatever other image inputs the model's family takes (``image_sizes``, ``image_grid_thw``,
            ``mm_token_type_ids``), all passed to the model; ``attributes`` is the auxiliary loss's.

    Returns:
        ``total`` (scalar, optimised) and ``token_acc`` (teacher-forced argmax accuracy on reply tokens).
    """
    import torch
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k not in ("labels", "attributes")}  # + any family's image keys
    out = model(**inputs, use_cache=False)
    logits = out.logits[:, :-1].float()  # (B, L-1, V): position t predicts token t+1
    targets = batch["labels"][:, 1:]  # (B, L-1)
    mask = targets != -100
    ce = F.cross_entropy(logits.transpose(1, 2), targets.clamp_min(0), reduction="none")  # (B, L-1)
    per_example = (ce * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
    with torch.no_grad():
        token_acc = ((logits.argmax(dim=-1) == targets) & mask).sum() / mask.sum().clamp_min(1)
    return {"total": per_example.mean(), "token_acc": token_acc}


def export(model, processor, cfg: TrainVQAConfig, out_dir: Path, command: list[str] | None = None) -> Path:
    """Write the model + processor, ``backbone.json``, the training log (copied from ``train.out_dir``)
    and the manifest into ``vqa_train.export_dir``."""
    from seal.core.manifest import MANIFEST, model_files, write_manifest
    from seal.models.backbone import save_llava

    export_dir = Path(cfg.vqa_train.export_dir)
    (export_dir / MANIFEST).unlink(missing_ok=True)
    save_llava(model.eval(), processor, export_dir, cfg.vqa_train.backbone)
    extra = {"init_from": cfg.vqa_train.init_from} if cfg.vqa_train.init_from else {}
    if cfg.data.path:
        extra["data"] = data_record(cfg.data.path, cfg.data.image_root)
    write_manifest(export_dir, "vqa", model_config(cfg), model_files(export_dir),
                   recipe=recipe_record(command, **extra))
    copy_train_log(out_dir, export_dir)
    return export_dir


def model_config(cfg: TrainVQAConfig) -> dict[str, Any]:
    """The manifest's ``config`` of the VQA model ``cfg`` trains (its sizes are ``backbone.json``):
    ``{"vwm": the answer layout of its examples, "hit_check": {}}``; for a model trained to check
    hits (``vqa_train.hit_check_kinds`` set), ``hit_check`` says how it must be asked, as it was
    trained: the ``vwm`` section's crops and the kinds."""
    vt = cfg.vqa_train
    hit_check: dict[str, Any] = {}
    if vt.hit_check_kinds is not None:
        hit_check = {"crop_scale": cfg.vwm.crop_scale, "min_context_px": cfg.vwm.min_context_px,
                     "kinds": list(vt.hit_check_kinds), "noun_kinds": list(vt.hit_check_noun_kinds)}
    return {"vwm": asdict(cfg.vwm), "hit_check": hit_check}


def run(cfg: TrainVQAConfig, command: list[str] | None = None, log=print) -> dict:
    """Train the VQA model as configured and export it; returns the loop's summary."""
    from training.distributed import main_process_first
    from training.loop import seed_everything, train

    vt = cfg.vqa_train
    prepare_run(cfg.synth, cfg.train, "VQA", synthetic=not cfg.data.path)
    out = Path(cfg.train.out_dir)
    if vt.base:
        from seal.models.vlm import load_vlm
        from training.lora import attach

        model, processor = load_vlm(vt.base, dtype=vt.base_dtype)
        seed_everything(cfg.seed)  # the adapter's initialisation
        trained = attach(model, cfg.lora)
        what = "every weight" if cfg.lora.full_finetune else f"LoRA rank {cfg.lora.rank} + {cfg.lora.modules_to_save}"
        log(f"fine-tuning {vt.base} ({what})")
    else:
        model, processor = build(vt, cfg.seed)
        if vt.init_from:
            warm_start(model, processor, vt.init_from)
            log(f"initialised from {vt.init_from}")
        trained = model
    processor_dir = out / "processor"
    processor.save_pretrained(str(processor_dir))
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    log(f"LLaVA: {n_params / 1e6:.2f} M parameters ({n_train / 1e6:.2f} M trained), vocabulary "
        f"{len(processor.tokenizer)}")
    with main_process_first():  # under accelerate launch: the first process writes the data cache, then the rest
        data = _dataset(cfg, model, processor, processor_dir, log)
    if vt.attribute_loss > 0:
        from training.vqa_aux import VQATrainModel
        from training.vsm_data import attribute_classes

        trained = VQATrainModel(model, attribute_classes(), balanced=vt.attribute_balanced)
        log(f"auxiliary attribute loss (weight {vt.attribute_loss}) on the vision tower")

    def on_save(unwrapped, out_dir: Path) -> None:
        if vt.base:
            path = export_adapter(unwrapped, processor, cfg, out_dir, command)
        else:
            path = export(getattr(unwrapped, "llava", unwrapped), processor, cfg, out_dir, command)
        log(f"exported the trained model to {path}")

    seed_everything(cfg.seed)
    summary = train(trained, data.epochs(cfg.train.batch_size, cfg.seed, vt.data.bucket_batches),
                    make_loss_fn(vt.attribute_loss), cfg.train, collate=data.batch, on_save=on_save)
    summary.update(examples=len(data), parameters=n_params, trained_parameters=n_train, export_dir=vt.export_dir)
    return summary


def _dataset(cfg: TrainVQAConfig, model, processor, processor_dir: Path, log):
    """The user's conversations (``data.path``) or the rendered SynthVStar scenes."""
    if cfg.data.path:
        from training.data.load import load_conversations
        from training.data.vqa_examples import build_user_dataset

        conversations = load_conversations(cfg.data, cfg.seed)
        limit = cfg.data.max_length or int(model.config.text_config.max_position_embeddings)
        data = build_user_dataset(processor, conversations, cfg.vwm, limit, log=log)
        log(f"{len(data)} conversations from {cfg.data.path}, {data.n_images} with an image")
        return data
    from training.vqa_data import build_dataset

    data = build_dataset(processor, cfg.synth, cfg.vqa_train.data, cfg.vwm, processor_dir, cfg.seed, log=log)
    log(f"{len(data)} examples from {cfg.synth.n} scenes, {len(data.images)} distinct views")
    return data


def export_adapter(model, processor, cfg: TrainVQAConfig, out_dir: Path, command: list[str] | None = None) -> Path:
    """A fine-tune's export into ``vqa_train.export_dir``: the adapter (peft ``save_pretrained``: LoRA +
    ``lora.modules_to_save``) or, with ``lora.full_finetune``, the whole model; the base's processor;
    the training log; the manifest (kind ``vqa``; config ``vwm``, ``hit_check``, ``adapter`` (the
    ``lora`` section, None for a full fine-tune) and ``base``; ``trained_against.base``: the base's
    path and fingerprint; the recipe names the data)."""
    from seal.core.manifest import MANIFEST, model_files, write_manifest
    from seal.models.backbone import save_llava
    from training.lora import base_record, lora_record, save_adapter

    vt = cfg.vqa_train
    export_dir = Path(vt.export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / MANIFEST).unlink(missing_ok=True)
    if cfg.lora.full_finetune:
        save_llava(model.eval(), processor, export_dir)
    else:
        save_adapter(model.eval(), export_dir)
        processor.save_pretrained(str(export_dir))
    config = {**model_config(cfg), "adapter": None if cfg.lora.full_finetune else lora_record(cfg.lora),
              "base": base_record(vt.base)}
    data = data_record(cfg.data.path, cfg.data.image_root) if cfg.data.path else {"synth": asdict(cfg.synth)}
    write_manifest(export_dir, "vqa", config, model_files(export_dir), trained_against={"base": vt.base},
                   recipe=recipe_record(command, data=data))
    copy_train_log(out_dir, export_dir)
    return export_dir
