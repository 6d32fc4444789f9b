"""``seal convert``: the published SEAL checkpoints -> the project's formats.

``seal convert seal-vqa SRC DST [--dtype auto|float32|float16|bfloat16|fp32|fp16|bf16] [--vision-tower DIR]
[--tokenizer DIR] [--overwrite] [--json]``: ``craigwu/seal_vqa_7b`` (original LLaVA code format,
sharded ``pytorch_model-*.bin`` or safetensors) -> a ``vqa`` checkpoint: a llava-hf LLaVA with the
Vicuna v1 chat template, the object projector (``vwm_layout: seal_objects``) and a manifest
(:mod:`seal.models.seal_convert_vqa`).

``seal convert seal-vsm SRC DST --vision-tower DIR [...]``: ``craigwu/seal_vsm_7b`` -> a ``vsm``
checkpoint of backend ``seal_vsm``, the V* engine's localizer (:mod:`search.seal_vsm.convert`). The
VSM checkpoint has no CLIP tower: ``--vision-tower`` names a local ``openai/clip-vit-large-patch14``.

Pickles are read with ``weights_only=True``. Exit codes: 0 converted; 2 unusable input (one stderr
line naming the file: a missing or damaged shard, a missing tensor, a shape that disagrees with
``config.json``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from seal.cli.common import print_json_line

FORMATS = ("seal-vqa", "seal-vsm")
DTYPES = ("auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert the published SEAL checkpoints (seal-vqa, seal-vsm) to our formats")
    p.add_argument("format", choices=FORMATS, help="which original checkpoint SRC is")
    p.add_argument("src", type=Path, metavar="SRC", help="the original checkpoint directory")
    p.add_argument("dst", type=Path, metavar="DST", help="the directory to write")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="weights dtype (auto: the source's)")
    p.add_argument("--vision-tower", type=Path, default=None, metavar="DIR",
                   help="local CLIP checkpoint, when SRC holds no CLIP tower (always for seal-vsm)")
    p.add_argument("--tokenizer", type=Path, default=None, metavar="DIR",
                   help="where the original tokenizer files are (default: SRC)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last stdout line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seal.core.errors import InputError

    if args.overrides:
        raise InputError(f"seal convert takes no config overrides, found {args.overrides[0]!r}")
    if args.format == "seal-vqa":
        from seal.models.seal_convert_vqa import convert_seal_vqa as convert
    else:
        from search.seal_vsm.convert import convert_seal_vsm as convert
    report = convert(args.src, args.dst, dtype=args.dtype, vision_tower=args.vision_tower,
                     tokenizer=args.tokenizer, overwrite=args.overwrite)
    if args.json:
        print_json_line(asdict(report))
    else:
        print(f"converted {args.format} {report.source} -> {report.out} ({report.kind} checkpoint, {report.dtype}): "
              f"{report.parameters / 1e6:.2f} M LLaVA parameters + {report.extra_parameters / 1e6:.2f} M others")
    return 0
