"""Track one target through a video file or a folder of frames; write an annotated video and a CSV of boxes.

    python tools/demo.py --video input.mp4 --init-box 100,80,40,60 \\
        --config configs/mixformerv2_s.yaml --checkpoint models/mixformerv2_small.pth.tar --out out.mp4

The CSV (``<out>.csv`` unless ``--csv``) has one row per frame: ``frame,x,y,w,h,score`` (frame 0 = the initial
box, no score). Frames are converted from OpenCV's BGR to RGB before tracking (the official demo fed BGR).
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from mixformerv2.boxes import check_box_xywh
from mixformerv2.config import load_config
from mixformerv2.data.sequence import read_frame_rgb
from mixformerv2.tracking.tracker import build_tracker
from mixformerv2.utils.cli import (add_backend_args, add_checkpoint_args, add_config_args, add_device_arg,
                                   checkpoint_from_args, cli_main, make_parser)
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.io import atomic_write_text
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("demo")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser(__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="input video file")
    source.add_argument("--frames", help="folder of frames (sorted by the number in the file name)")
    p.add_argument("--init-box", required=True, help="target in the first frame: x,y,w,h (pixels)")
    add_config_args(p)
    add_checkpoint_args(p)
    p.add_argument("--out", default="demo_out.mp4", help="annotated video to write (mp4v)")
    p.add_argument("--csv", default=None, help="per-frame boxes and scores (default: --out with .csv)")
    add_device_arg(p)
    add_backend_args(p)
    p.add_argument("--dataset", default=None, help="use this benchmark's tracker settings from the config")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: the video's, or 30)")
    p.add_argument("--no-cache", action="store_true", help="full forward every frame")
    return p.parse_args(argv)


def parse_box(text: str) -> list[float]:
    """``"x,y,w,h"`` (commas or spaces) -> four floats; ``UserError`` naming ``--init-box`` otherwise."""
    try:
        values = [float(v) for v in re.split(r"[,\s]+", text.strip()) if v]
        check_box_xywh(values, f"--init-box {text!r}")
    except ValueError as err:
        raise UserError(f"--init-box {text!r}: expected x,y,w,h, four finite numbers with positive w and h") from err
    return values


def check_box_in_frame(box_xywh: list[float], frame: np.ndarray) -> None:
    """``UserError`` when the initial box does not overlap the first frame (a typo or the wrong coordinates)."""
    height, width = frame.shape[:2]
    x, y, w, h = box_xywh
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise UserError(f"--init-box {x:g},{y:g},{w:g},{h:g} lies outside the first frame ({width}x{height})")


def _frame_number(path: Path) -> tuple:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def frame_paths(folder: str | Path) -> list[Path]:
    """Image files of a folder, in the numeric order of their names; ``UserError`` when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--frames {folder}: not a folder")
    paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_frame_number)
    if not paths:
        raise UserError(f"--frames {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def open_video(path: str | Path) -> cv2.VideoCapture:
    """An opened capture of a video file; ``UserError`` when the file is missing or OpenCV cannot open it."""
    if not Path(path).is_file():
        raise UserError(f"--video {path}: no such file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise UserError(f"--video {path}: OpenCV cannot open it as a video")
    return capture


def video_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """RGB frames of an opened capture (OpenCV decodes BGR; converted here); releases it at the end."""
    try:
        while True:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def open_source(args) -> tuple[Iterator[np.ndarray], float | None, int | None]:
    """(RGB frames, frame rate or None, frame count or None) of ``--video`` or ``--frames``, checked before the
    model is built. A video's count is its container's, which some formats do not know (None)."""
    if args.frames:
        paths = frame_paths(args.frames)
        return (read_frame_rgb(path) for path in paths), None, len(paths)
    capture = open_video(args.video)
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return video_frames(capture), (fps if fps and fps > 0 else None), (count if count > 0 else None)


def draw(frame_rgb: np.ndarray, box_xywh, score: float | None, index: int) -> np.ndarray:
    """BGR copy of the frame with the box, the frame index and the score drawn on it."""
    image = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    x, y, w, h = (int(round(v)) for v in box_xywh)
    cv2.rectangle(image, (x, y), (x + w, y + h), (0, 255, 0), 2)
    label = f"#{index}" + ("" if score is None else f"  score {score:.2f}")
    cv2.putText(image, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2, cv2.LINE_AA)
    return image


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    init_box = parse_box(args.init_box)
    device = resolve_device(args.device)
    frames, video_fps, frame_count = open_source(args)
    fps = args.fps or video_fps or 30.0
    cfg = load_config(args.config, args.overrides)
    tracker = build_tracker(cfg, checkpoint_from_args(args, logger), device, dataset=args.dataset,
                            cached=False if args.no_cache else None, backend=args.backend,
                            precision=args.precision, export_dir=args.export_dir,
                            compile_step=args.compile)
    logger.info("network: %s %s, %s path", tracker.backend, tracker.precision, tracker.forward_path)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = Path(args.csv) if args.csv else out.with_suffix(".csv")
    rows = ["frame,x,y,w,h,score"]
    writer = None
    try:
        for index, frame in enumerate(tqdm(frames, total=frame_count, desc="demo", unit="frame")):
            if index == 0:
                check_box_in_frame(init_box, frame)
                tracker.initialize(frame, init_box)
                box, score = init_box, None
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise OSError(f"{out}: cannot open a video writer (mp4v)")
            else:
                result = tracker.track(frame)
                box, score = result.box_xywh, result.score
            writer.write(draw(frame, box, score, index))
            rows.append(f"{index}," + ",".join(f"{v:.2f}" for v in box) + ("," if score is None else f",{score:.4f}"))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise UserError(f"{args.video or args.frames}: no frames could be read")
    atomic_write_text(csv_path, "\n".join(rows) + "\n")
    logger.info("%d frames: annotated video %s, boxes and scores %s", len(rows) - 1, out.resolve(),
                csv_path.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
