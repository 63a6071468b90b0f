"""Export the tracker's network to ONNX: the template encoder and the per-frame step, checked, with a manifest.

    python tools/export.py --config configs/mixformerv2_s.yaml --checkpoint models/mixformerv2_small.pth.tar \\
        --out export/mixformerv2_s

Writes ``template_encoder.onnx`` (template + online template -> every layer's template keys/values),
``search_step.onnx`` (search crop + those keys/values -> box, score, side logits) and, last, ``manifest.json``
(input/output names and shapes, opset, resolved model config, checkpoint SHA-256, versions, measured parity). Each
graph passes the ONNX checker; ONNX Runtime must agree with PyTorch to ``--tolerance`` on boxes and scores, or
nothing is declared exported. Track with the graphs:

    python tools/test.py ... --backend onnxruntime --export-dir export/mixformerv2_s

OpenVINO int8 quantises the linear layers statically: their activation ranges are calibrated on tracker crops.
Without more it calibrates on synthetic scenes when the backend is built; ``--calibrate`` calibrates on a dataset's
frames instead (a training split, not the benchmark you will score) and stores ``search_step.int8.onnx`` in the
folder, which ``--backend openvino --precision int8 --export-dir`` then runs (``run.json`` names the calibration):

    python tools/export.py ... --out export/s --calibrate got10k_train --calibration-root data/got10k

Needs the ``export`` extra (pip install 'mixformerv2[export]'). Exit status 2 with one line on stderr for a
checkpoint that does not fit the config, a missing extra or a failed check.
"""
from __future__ import annotations

import json
import logging
import sys

from mixformerv2.config import load_config
from mixformerv2.export.calibration import calibrate_export
from mixformerv2.export.onnx import DEFAULT_OPSET, PARITY_TOLERANCE, export_onnx
from mixformerv2.models import build_model, load_checkpoint
from mixformerv2.utils.cli import add_config_args, cli_main, emit, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("export")


def calibration_frames(args) -> tuple[list, str]:
    """``--calibrate``: (frame pairs of the dataset, the calibration source in words), read before exporting so
    that a bad dataset fails fast."""
    from mixformerv2.data.registry import get_dataset
    from mixformerv2.export.calibration import sequence_frame_pairs

    if args.calibration_pairs < 1:
        raise UserError(f"--calibration-pairs {args.calibration_pairs}: needs at least 1")
    try:
        dataset = get_dataset(args.calibrate, root=args.calibration_root, split=args.calibration_split)
        pairs = sequence_frame_pairs(dataset, args.calibration_pairs)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"--calibrate {args.calibrate}: {err}") from None
    split = f" ({args.calibration_split})" if args.calibration_split else ""
    return pairs, f"{args.calibrate}{split} at {dataset.root}"


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
    parser.add_argument("--calibrate", default=None, metavar="DATASET",
                        help="also write the OpenVINO int8 step graph calibrated on this dataset (registry name)")
    parser.add_argument("--calibration-root", default=None, metavar="DIR", help="--calibrate: the dataset's root")
    parser.add_argument("--calibration-split", default=None, help="--calibrate: its split, where it has several")
    parser.add_argument("--calibration-pairs", type=int, default=24,
                        help="--calibrate: (template, search) frame pairs, spread over the sequences (default 24)")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    cfg = load_config(args.config, args.overrides)
    model = build_model(cfg.model)
    load_checkpoint(model, args.checkpoint)
    calibration = calibration_frames(args) if args.calibrate else None
    manifest = export_onnx(model, cfg.model, args.out, checkpoint=args.checkpoint, opset=args.opset,
                           simplify=not args.no_simplify, tolerance=args.tolerance)
    if args.calibrate:
        manifest = calibrate_export(args.out, model, cfg.model, *calibration, settings=cfg.test)
    logger.info("wrote %s: %s", args.out, ", ".join(g["file"] for g in manifest["graphs"].values()))
    emit(json.dumps(manifest["parity"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
