"""Accuracy cost of each backend and precision: track one benchmark with each, report AUC and agreement.

    python tools/compare_backends.py --config configs/mixformerv2_s.yaml --checkpoint models/mixformerv2_small.pth.tar \\
        --dataset lasot --root data/synthetic/lasot --json backends_accuracy.json

Each variant (``backend:precision``, or ``auto``) tracks the same sequences; the first is the reference (default
``torch:fp32``). Reported per variant: AUC (the benchmark's rules, boxes truncated as the runner's box rule), its
difference to the reference in points, the mean IoU between its trajectory and the reference's, and the median
tracker step in ms. One trajectory is one draw (a tracker that loses its target is chaotic: noise far below a grey
level moves it onto another path), so each variant also tracks the benchmark ``--repeats`` more times with
seeded noise of ``--dither`` on the search crop; the table adds the mean AUC of those runs and its difference to
the reference's, with the standard error: the expected accuracy cost (``mixformerv2.tracking.compare``).
Variants that cannot run here (a missing extra, bf16 without native bf16) are left out with a warning. Nothing is written but ``--json`` / ``--markdown``.
"""
from __future__ import annotations

import json
import logging
import sys

import torch

from mixformerv2.config import load_config
from mixformerv2.export.backends import unavailable_reason
from mixformerv2.export.cpu import cpu_info
from mixformerv2.tracking.compare import Variant, compare_backends, format_comparison
from mixformerv2.tracking.runner import settings_key
from mixformerv2.utils.cli import add_config_args, cli_main, emit, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.io import atomic_write_text
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("compare_backends")
DEFAULT_VARIANTS = ("torch:fp32", "torch:bf16", "torch:int8", "onnxruntime:fp32", "onnxruntime:int8",
                    "openvino:fp32", "openvino:bf16", "openvino:int8", "auto")


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    add_config_args(parser)
    parser.add_argument("--checkpoint", required=True, help="checkpoint that fits the config")
    parser.add_argument("--dataset", default="lasot", help="benchmark name (default lasot)")
    parser.add_argument("--split", default=None, help="dataset split where the benchmark has several")
    parser.add_argument("--root", required=True, help="dataset root, e.g. data/synthetic/lasot")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), metavar="BACKEND[:PRECISION]",
                        help="first = reference (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=8,
                        help="dithered runs per variant, 0: none (default %(default)s)")
    parser.add_argument("--dither", type=float, default=1e-3,
                        help="standard deviation of the search-crop noise, normalised units; a grey level is "
                             "about 0.017 (default %(default)g)")
    parser.add_argument("--export-dir", default=None, metavar="DIR",
                        help="graphs of tools/export.py for the ONNX backends (with its calibrated OpenVINO int8 "
                             "graph where it has one; default: exported, and int8 calibrated on synthetic scenes)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch and the ONNX backends)")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--markdown", default=None, help="write the table here")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    from mixformerv2.data.registry import get_dataset

    dataset = get_dataset(args.dataset, root=args.root, split=args.split)
    sequences = [dataset[i] for i in range(len(dataset))]
    variants = []
    for text in args.variants:
        variant = Variant.parse(text)
        reason = None if variant.backend == "auto" else unavailable_reason(
            variant.backend, variant.precision or "fp32", torch.device("cpu"), cpu_info())
        if reason is None:
            variants.append(variant)
        else:
            logger.warning("%s left out: %s", text, reason)
    if args.repeats < 0 or not args.dither > 0:
        raise UserError(f"--repeats must be >= 0 and --dither > 0 (got {args.repeats}, {args.dither})")
    if not variants:
        raise UserError("--variants: none of them can run on this machine")
    result = compare_backends(cfg, args.checkpoint, sequences, settings_key(cfg, args.dataset, args.split),
                              variants, device="cpu", export_dir=args.export_dir, repeats=args.repeats,
                              dither=args.dither)
    result["cpu"] = cpu_info().describe()
    result["threads"] = torch.get_num_threads()
    table = format_comparison(result) + f"\nCPU: {result['cpu']}; {result['threads']} threads\n"
    emit(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
