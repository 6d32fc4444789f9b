"""``seal merge-lora``: fold a LoRA adapter into its LLaVA: a V* search model's
(:mod:`search.vsm.merge`) or a fine-tuned VQA model's (:func:`training.lora.merge_vqa_adapter`).

``seal merge-lora --vsm checkpoints/vsm_tiny --out checkpoints/vsm_tiny_merged [--json] [--overwrite]
[--tolerance 1e-3] [--dtype float32]``

``seal merge-lora --vqa runs/vqa_lora/export --out DIR [--base BASE]``: a VQA adapter (``seal train vqa
--base``; its manifest names the base, or ``--base`` gives it, checked against the recorded
fingerprint) merged into the base with peft ``merge_and_unload``; ``DIR`` is a plain checkpoint of the
base's family (``AutoModelForImageTextToText.from_pretrained``) with a manifest (kind ``vqa``), its
logits on a fixed prompt compared with the adapter model's after a reload from disk.

Loads the adapter checkpoint ``--vsm`` (strict), merges LoRA, the trained ``<LOC>`` rows and the
``modules_to_save`` copies into the weights (peft ``merge_and_unload``), and writes ``--out``: a
plain LLaVA directory (``LlavaForConditionalGeneration.from_pretrained(OUT)`` /
``AutoProcessor.from_pretrained(OUT)``) plus ``decoders.safetensors`` and ``vsm_config.json``
(``"merged": true``), so ``VSMModel.from_pretrained(OUT)`` still gives the localizer.

The merged model is then reloaded from disk and compared with the adapter model on a fixed prompt
(LM logits, ``<LOC>`` state, heatmap). Output: a short summary, or with ``--json`` one JSON object
(``out``, ``parameters``, ``max_abs_logit_diff``, ...) on the last stdout line. Exit codes: 0 merged
and parity within ``--tolerance``; 1 merged but parity failed; 2 unusable input (one stderr line).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from seal.cli.common import print_json_line

DTYPES = ("float32", "float16", "bfloat16")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge-lora", help="merge a VSM or VQA checkpoint's LoRA adapter into a plain LLaVA directory")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--vsm", type=Path, metavar="DIR",
                       help="VSM adapter checkpoint (backbone/, adapter/, decoders.safetensors, vsm_config.json)")
    which.add_argument("--vqa", type=Path, metavar="DIR",
                       help="VQA adapter checkpoint (seal train vqa --base: adapter_config.json, manifest.json)")
    p.add_argument("--base", type=Path, metavar="DIR",
                   help="--vqa: the base model (default: the one the adapter's manifest records)")
    p.add_argument("--out", required=True, type=Path, metavar="OUT", help="merged checkpoint directory to write")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last stdout line")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest accepted max-abs difference between adapter and merged outputs (default 1e-3)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype to load, merge and save in")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from search.vsm.merge import merge_checkpoint
    from seal.core.errors import InputError

    if not args.tolerance >= 0:
        raise InputError(f"--tolerance: expected >= 0, found {args.tolerance}")
    if args.vqa is not None:
        return _merge_vqa(args)
    if args.base is not None:
        raise InputError("--base: only --vqa adapters name their base; a VSM checkpoint holds its own backbone/")
    report = merge_checkpoint(args.vsm, args.out, tolerance=args.tolerance, dtype=getattr(torch, args.dtype),
                              overwrite=args.overwrite)
    if args.json:
        print_json_line(asdict(report))
    else:
        print(f"merged {report.source} -> {report.out}: {report.parameters / 1e6:.2f} M LLaVA parameters "
              f"(+ {report.decoder_parameters / 1e6:.2f} M decoder parameters)")
        print(f"parity (max |adapter - merged|): logits {report.max_abs_logit_diff:.2e}, "
              f"<LOC> state {report.max_abs_loc_state_diff:.2e}, heatmap {report.max_abs_heatmap_diff:.2e} "
              f"(tolerance {report.tolerance:.0e}): {'ok' if report.parity_ok else 'FAILED'}")
    if not report.parity_ok:
        print(f"seal merge-lora: merged outputs differ from the adapter model by more than {report.tolerance}",
              file=sys.stderr)
        return 1
    return 0


def _merge_vqa(args: argparse.Namespace) -> int:
    import torch

    from training.lora import merge_vqa_adapter

    report = merge_vqa_adapter(args.vqa, args.out, base=args.base, tolerance=args.tolerance,
                               dtype=getattr(torch, args.dtype), overwrite=args.overwrite)
    if args.json:
        print_json_line(report)
    else:
        print(f"merged {report['source']} into {report['base']} -> {report['out']}: "
              f"{report['parameters'] / 1e6:.2f} M parameters")
        print(f"parity (max |adapter - merged| logits): {report['max_abs_logit_diff']:.2e} "
              f"(tolerance {report['tolerance']:.0e}): {'ok' if report['parity_ok'] else 'FAILED'}")
    if not report["parity_ok"]:
        print(f"seal merge-lora: merged outputs differ from the adapter model by more than {args.tolerance}",
              file=sys.stderr)
        return 1
    return 0
