"""Export the tracker's network to ONNX: the template encoder and the per-frame step, checked, with a manifest.

    python tools/export.py --config configs/mixformerv2_s.yaml --checkpoint models/mixformerv2_small.pth.tar \\
        --out export/mixformerv2_s

Writes ``template_encoder.onnx`` (template + online template -> every layer's template keys/values),
``search_step.onnx`` (search crop + those keys/values -> box, score, side logits) and, last, ``manifest.json``
(input/output names and shapes, opset, resolved model config, checkpoint SHA-256, versions, measured parity). Each
graph passes the ONNX checker; ONNX Runtime must agree with PyTorch to ``--tolerance`` on boxes and scores, or
nothing is declared exported. Track with the graphs:

    python tools/test.py ... --backend onnxruntime --export-dir export/mixformerv2_s

Needs the ``export`` extra (pip install 'mixformerv2[export]'). Exit status 2 with one line on stderr for a
checkpoint that does not fit the config, a missing extra or a failed check.
"""
from __future__ import annotations

import json
import logging
import sys

from mixformerv2.config import load_config
from mixformerv2.export.onnx import DEFAULT_OPSET, PARITY_TOLERANCE, export_onnx
from mixformerv2.models import build_model, load_checkpoint
from mixformerv2.utils.cli import add_config_args, cli_main, emit, make_parser
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("export")


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    add_config_args(parser)
    parser.add_argument("--checkpoint", required=True, help="checkpoint that fits the config (loaded strictly)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the graphs and manifest.json")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--no-simplify", action="store_true",
                        help="keep the graphs as exported (default: ONNX Runtime's basic simplification)")
    parser.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE,
                        help=f"max |ONNX Runtime - PyTorch| on boxes and scores (default {PARITY_TOLERANCE:g})")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    cfg = load_config(args.config, args.overrides)
    model = build_model(cfg.model)
    load_checkpoint(model, args.checkpoint)
    manifest = export_onnx(model, cfg.model, args.out, checkpoint=args.checkpoint, opset=args.opset,
                           simplify=not args.no_simplify, tolerance=args.tolerance)
    logger.info("wrote %s: %s", args.out, ", ".join(g["file"] for g in manifest["graphs"].values()))
    emit(json.dumps(manifest["parity"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
