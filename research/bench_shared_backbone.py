"""Benchmark: the VQA and search adapters on two copies of the base LLaVA vs one shared base.

``python -m research.bench_shared_backbone [--out runs/bench_shared/report.json] [--threads 1] [--workdir DIR]``

1. **prepare** (this process): a random tiny LLaVA at the shipped VSM sizes
   (:func:`training.vsm_config._vsm_backbone`, tokenizer trained on the shipped corpus), saved once;
   two LoRA adapters on it with random (non-zero) weights, saved with peft:

   - ``vqa``: LoRA r=8 on the language model's q/v projections;
   - ``vsm``: the same LoRA + the ``<LOC>`` rows (peft trainable tokens), variant ``lora``; variant
     ``shipped`` adds the shipped VSM's ``modules_to_save`` (full copies of the vision tower and
     the projector, :func:`training.vsm_config._vsm_heads`).

2. **measure**, each setting in a fresh subprocess (``--worker``): ``separate`` loads the base twice,
   one adapter on each copy; ``shared`` loads it once with both adapters
   (:class:`search.vsm.shared.SharedBackbone`). Each worker reports peak RSS (``ru_maxrss``) after
   its imports, after loading and at the end, the current RSS (``VmRSS``) before and after loading,
   the distinct parameter bytes in the process, and runs one forward per adapter on a fixed
   prompt + image, saving the (1, T, V) logits; the parent checks the shared logits equal the
   separate ones per adapter and differ between adapters. At the tiny sizes the ~1 M-parameter
   base (4 MB) is small next to the interpreter + torch import (~0.8 GB of RSS), so the parameter
   bytes are the exact measure and the RSS numbers show only that the difference is of that size.

3. **on paper** at LLaVA-1.5-7B sizes (fp16): parameter counts from the architecture formulas
   (checked against the tiny model's counted parameters in ``formula_check``), the nominal
   "7 B x 2 bytes", and LoRA r=8 on q/v = layers * 2 targets * r * (d_in + d_out).

The report is printed as JSON on stdout (summary lines on stderr) and written to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("lora", "shipped")
MODES = ("separate", "shared")
ADAPTERS = ("vqa", "vsm")
PROMPT = "USER: <image>\nPlease locate the red star in this image. ASSISTANT: Sure, <LOC>."
MB = 1e6
GB = 1e9


# ---- on paper --------------------------------------------------------------------------------
@dataclass
class LlavaSizes:
    """Architecture of a LLaVA (defaults: LLaVA-1.5-7B = Vicuna-7B + CLIP ViT-L/14-336)."""

    vocab: int = 32000
    text_hidden: int = 4096
    text_layers: int = 32
    text_intermediate: int = 11008
    vision_hidden: int = 1024
    vision_layers: int = 24
    vision_intermediate: int = 4096
    image_size: int = 336
    patch_size: int = 14


def text_params(s: LlavaSizes) -> int:
    """LLaMA decoder: embedding + untied LM head + layers (q/k/v/o, gate/up/down, 2 RMSNorms) + final norm."""
    d, f = s.text_hidden, s.text_intermediate
    return 2 * s.vocab * d + s.text_layers * (4 * d * d + 3 * d * f + 2 * d) + d


def vision_params(s: LlavaSizes) -> int:
    """CLIP vision tower: patch conv (no bias), CLS, positions, pre/post LayerNorm, layers with biases."""
    d, f = s.vision_hidden, s.vision_intermediate
    patches = (s.image_size // s.patch_size) ** 2
    layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    return 3 * s.patch_size ** 2 * d + d + (patches + 1) * d + 4 * d + s.vision_layers * layer


def projector_params(s: LlavaSizes) -> int:
    """Two-layer MLP projector vision width -> text width -> text width, with biases."""
    return s.vision_hidden * s.text_hidden + s.text_hidden + s.text_hidden ** 2 + s.text_hidden


def lora_params(s: LlavaSizes, r: int = 8, targets: int = 2) -> int:
    """LoRA rank ``r`` on ``targets`` square (d x d) projections per layer: A (r x d) + B (d x r) each."""
    return s.text_layers * targets * r * (s.text_hidden + s.text_hidden)


def paper_estimate(s: LlavaSizes = LlavaSizes(), bytes_per_param: int = 2, r: int = 8) -> dict[str, Any]:
    """Memory of two separate adapted models vs one shared base, from the formulas above (fp16)."""
    base = text_params(s) + vision_params(s) + projector_params(s)
    lora = lora_params(s, r)
    loc_rows = 2 * s.text_hidden  # <LOC> row of the input embedding and of the LM head
    full_copies = vision_params(s) + projector_params(s)  # the shipped VSM's modules_to_save

    def setting(vsm_extra: int) -> dict[str, float]:
        vqa, vsm = lora, lora + loc_rows + vsm_extra
        separate, shared = (2 * base + vqa + vsm) * bytes_per_param, (base + vqa + vsm) * bytes_per_param
        return {"vqa_adapter_mb": vqa * bytes_per_param / MB, "vsm_adapter_mb": vsm * bytes_per_param / MB,
                "separate_gb": separate / GB, "shared_gb": shared / GB, "saved_gb": (separate - shared) / GB,
                "shared_over_separate": shared / separate}

    nominal = 7_000_000_000
    return {"sizes": asdict(s), "bytes_per_param": bytes_per_param, "lora_r": r,
            "base_params": base, "base_gb": base * bytes_per_param / GB,
            "base_gib": base * bytes_per_param / 2 ** 30, "lora_params": lora,
            "nominal_7b": {"base_gb": nominal * bytes_per_param / GB, "base_gib": nominal * bytes_per_param / 2 ** 30,
                           "separate_gb": (2 * nominal + 2 * lora) * bytes_per_param / GB,
                           "shared_gb": (nominal + 2 * lora) * bytes_per_param / GB},
            "lora": setting(0), "shipped": setting(full_copies)}


def tiny_sizes(vocab: int) -> LlavaSizes:
    from training.vsm_config import _vsm_backbone

    b = _vsm_backbone()
    return LlavaSizes(vocab=vocab, text_hidden=b.text_hidden, text_layers=b.text_layers,
                      text_intermediate=b.text_intermediate, vision_hidden=b.vision_hidden,
                      vision_layers=b.vision_layers, vision_intermediate=b.vision_intermediate,
                      image_size=b.image_size, patch_size=b.patch_size)


# ---- prepare (parent) -------------------------------------------------------------------------
def adapter_dirs(workdir: Path, variant: str) -> dict[str, Path]:
    return {"vqa": workdir / "adapters" / "vqa", "vsm": workdir / "adapters" / f"vsm_{variant}"}


def _perturb(model, seed: int, scale: float = 0.1) -> None:
    """Random adapter weights (LoRA B and the <LOC> deltas start at zero; saved copies move too)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name or "modules_to_save" in name:
                p.add_(torch.randn(p.shape, generator=gen) * scale)


def prepare(workdir: Path) -> dict[str, Any]:
    """Save the tiny base and the three adapters under ``workdir``; returns counts for the report."""
    from peft import get_peft_model

    from search.vsm.model import _lora_config
    from search.vsm.shared import adapter_parameter_bytes
    from seal.models.backbone import build_tiny_llava, save_llava
    from seal.models.tokenizer import LOC_TOKEN, train_tokenizer
    from training.tokenizer_corpus import corpus_texts
    from training.vsm_config import TrainVSMConfig, _vsm_heads

    recipe = TrainVSMConfig()  # the shipped search model's sizes and tokenizer corpus
    train_cfg = recipe.vsm_train
    texts = corpus_texts(recipe.seed, train_cfg.corpus_spatial_pairs, train_cfg.corpus_layouts)
    tokenizer = train_tokenizer(texts, vocab_size=train_cfg.vocab_size)
    base, processor = build_tiny_llava(train_cfg.backbone, tokenizer)
    save_llava(base, processor, workdir / "base")
    loc = int(tokenizer.convert_tokens_to_ids(LOC_TOKEN))
    heads = _vsm_heads()
    configs = {"vqa": replace(heads, train_loc_token=False, modules_to_save=()),
               "vsm_lora": replace(heads, modules_to_save=()), "vsm_shipped": heads}
    adapter_bytes = {}
    for seed, (name, cfg) in enumerate(configs.items(), start=1):
        model = get_peft_model(copy.deepcopy(base), _lora_config(cfg, loc))
        _perturb(model, seed)
        model.save_pretrained(str(workdir / "adapters" / name), save_embedding_layers=False)
        adapter_bytes[name] = adapter_parameter_bytes(model)
    sizes = tiny_sizes(len(tokenizer))
    counted = sum(p.numel() for p in base.parameters())
    return {"backbone": asdict(train_cfg.backbone), "vocab": len(tokenizer), "base_params": counted,
            "adapter_bytes": adapter_bytes,
            "formula_check": {"base_params_formula": text_params(sizes) + vision_params(sizes)
                              + projector_params(sizes), "base_params_counted": counted,
                              "lora_params_formula": lora_params(sizes, heads.lora_r),
                              "lora_params_counted": adapter_bytes["vqa"] // 4}}


# ---- measure (worker subprocess) --------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def current_rss_mb() -> float | None:
    """Resident set size of this process now (``VmRSS`` of ``/proc/self/status``; None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError, IndexError):
        pass
    return None


def fixed_inputs(processor) -> dict:
    """``input_ids`` / ``attention_mask`` (1, T), ``pixel_values`` (1, 3, S, S): :data:`PROMPT` and a seeded image."""
    import numpy as np
    from PIL import Image

    size = processor.image_processor.crop_size["height"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    return dict(processor(images=image, text=PROMPT, return_tensors="pt"))


def worker(mode: str, variant: str, workdir: Path, threads: int) -> dict[str, Any]:
    """Load ``mode`` (two bases or one shared), one forward per adapter; logits to ``workdir/outputs``."""
    import torch
    from transformers import AutoProcessor

    from search.vsm.shared import SharedBackbone, adapter_parameter_bytes, unique_parameter_bytes
    from seal.models.backbone import load_llava

    torch.set_num_threads(threads)
    rss_imports, now_imports = peak_rss_mb(), current_rss_mb()
    dirs = adapter_dirs(workdir, variant)
    processor = AutoProcessor.from_pretrained(str(workdir / "base"), local_files_only=True)
    start = time.perf_counter()
    if mode == "separate":  # one base copy per adapter
        models = {name: SharedBackbone.from_adapter_dirs(load_llava(workdir / "base")[0], {name: d}).eval()
                  for name, d in dirs.items()}
    else:
        shared = SharedBackbone.from_adapter_dirs(load_llava(workdir / "base")[0], dirs).eval()
        models = {name: shared for name in dirs}
    load_seconds = time.perf_counter() - start
    rss_loaded, now_loaded = peak_rss_mb(), current_rss_mb()
    distinct = list({id(m): m for m in models.values()}.values())
    inputs = fixed_inputs(processor)
    logits, forward_seconds = {}, {}
    with torch.no_grad():
        for name in (*ADAPTERS, *ADAPTERS):  # the second round shows switching back gives the same output
            t = time.perf_counter()
            out = models[name](name, **inputs).logits
            if name in logits:
                if not torch.equal(out, logits[name]):
                    raise RuntimeError(f"adapter {name}: a repeated call gave different logits")
            else:
                logits[name], forward_seconds[name] = out, time.perf_counter() - t
    switch_us = None
    if mode == "shared":
        t = time.perf_counter()
        for i in range(100):
            shared.set_adapter(ADAPTERS[i % 2])
        switch_us = (time.perf_counter() - t) / 100 * 1e6
    out_dir = workdir / "outputs"
    out_dir.mkdir(exist_ok=True)
    torch.save(logits, out_dir / f"{variant}_{mode}.pt")
    peak = peak_rss_mb()
    return {"mode": mode, "variant": variant, "threads": threads, "base_copies": len(distinct),
            "parameter_mb": unique_parameter_bytes(*distinct) / MB,
            "adapter_parameter_mb": sum(adapter_parameter_bytes(m) for m in distinct) / MB,
            "rss_after_imports_mb": rss_imports, "rss_after_load_mb": rss_loaded, "peak_rss_mb": peak,
            "model_rss_mb": peak - rss_imports, "current_rss_after_imports_mb": now_imports,
            "current_rss_after_load_mb": now_loaded,
            "load_rss_mb": None if now_imports is None or now_loaded is None else now_loaded - now_imports,
            "load_seconds": load_seconds, "forward_seconds": forward_seconds,
            "switch_microseconds": switch_us, "tokens": int(inputs["input_ids"].shape[1])}


def run_worker(mode: str, variant: str, workdir: Path, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "research.bench_shared_backbone", "--worker", mode, "--variant", variant,
           "--workdir", str(workdir), "--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {mode}/{variant} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(workdir: Path, variant: str) -> dict[str, float]:
    """Max |shared - separate| logits per adapter, and max |vqa - vsm| within the shared model."""
    import torch

    from search.vsm.shared import max_abs_diff

    sep = torch.load(workdir / "outputs" / f"{variant}_separate.pt")
    sh = torch.load(workdir / "outputs" / f"{variant}_shared.pt")
    out = {f"{name}_shared_vs_separate": max_abs_diff(sh[name], sep[name]) for name in ADAPTERS}
    out["vqa_vs_vsm_shared"] = max_abs_diff(sh["vqa"], sh["vsm"])
    return out


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def run_bench(workdir: Path, threads: int, log=print) -> dict[str, Any]:
    info = prepare(workdir)
    log(f"tiny base: {info['base_params'] / 1e6:.2f} M parameters; adapters (bytes): {info['adapter_bytes']}")
    variants = {}
    for variant in VARIANTS:
        res = {mode: run_worker(mode, variant, workdir, threads) for mode in MODES}
        sep, sh = res["separate"], res["shared"]
        res["saved"] = {k: None if sep[k] is None or sh[k] is None else sep[k] - sh[k]
                        for k in ("parameter_mb", "peak_rss_mb", "model_rss_mb", "load_rss_mb")}
        res["outputs"] = compare(workdir, variant)
        variants[variant] = res
        log(f"{variant}: parameters {sep['parameter_mb']:.2f} MB separate vs {sh['parameter_mb']:.2f} MB shared; "
            f"peak RSS {sep['peak_rss_mb']:.0f} vs {sh['peak_rss_mb']:.0f} MB (model part "
            f"{sep['model_rss_mb']:.1f} vs {sh['model_rss_mb']:.1f} MB, RSS growth while loading "
            f"{_mb(sep['load_rss_mb'])} vs {_mb(sh['load_rss_mb'])} MB); outputs {res['outputs']}")
    paper = paper_estimate()
    for variant in VARIANTS:
        p = paper[variant]
        log(f"7B on paper ({variant}): separate {p['separate_gb']:.2f} GB vs shared {p['shared_gb']:.2f} GB "
            f"(adapters {p['vqa_adapter_mb']:.1f} + {p['vsm_adapter_mb']:.1f} MB)")
    return {"tiny": info, "variants": variants, "paper_7b": paper}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.bench_shared_backbone", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench_shared/report.json"), help="report JSON")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of each worker")
    p.add_argument("--workdir", type=Path, help="keep the saved base, adapters and logits here (default: a temp dir)")
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, default="lora", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads: expected >= 1, found {args.threads}")
    if args.worker:
        print(json.dumps(worker(args.worker, args.variant, args.workdir, args.threads)), flush=True)
        return 0
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = run_bench(args.workdir, args.threads, log)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_shared_") as tmp:
            report = run_bench(Path(tmp), args.threads, log)
    report = {"command": ["python", "-m", "research.bench_shared_backbone", *(sys.argv[1:] if argv is None else argv)],
              **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
