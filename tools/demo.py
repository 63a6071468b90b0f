"""Track one target through a video file or a folder of frames; write an annotated video and a CSV of boxes.

    python tools/demo.py --video input.mp4 --init-box 100,80,40,60 \
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

from mixformerv2.config import load_config
from mixformerv2.data.sequence import read_frame_rgb
from mixformerv2.tracking.tracker import build_tracker, default_device
from mixformerv2.utils.io import atomic_write_text

logger = logging.getLogger("demo")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="input video file")
    source.add_argument("--frames", help="folder of frames (sorted by the number in the file name)")
    p.add_argument("--init-box", required=True, help="target in the first frame: x,y,w,h (pixels)")
    p.add_argument("--config", required=True, help="model/tracker YAML")
    p.add_argument("--checkpoint", required=True, help="official-format checkpoint")
    p.add_argument("--out", default="demo_out.mp4", help="annotated video to write (mp4v)")
    p.add_argument("--csv", default=None, help="per-frame boxes and scores (default: --out with .csv)")
    p.add_argument("--device", default=default_device(), help="torch device (default: cuda if available)")
    p.add_argument("--dataset", default=None, help="use this benchmark's tracker settings from the config")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: the video's, or 30)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--no-cache", action="store_true", help="full forward every frame")
    return p.parse_args(argv)


def parse_box(text: str) -> list[float]:
    values = [float(v) for v in re.split(r"[,\s]+", text.strip()) if v]
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
        raise ValueError(f"--init-box {text!r}: expected x,y,w,h with positive w and h")
    return values


def _frame_number(path: Path) -> tuple:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def folder_frames(folder: str | Path) -> Iterator[np.ndarray]:
    """RGB frames of a folder, in the numeric order of their names."""
    paths = sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_frame_number)
    if not paths:
        raise FileNotFoundError(f"{folder}: no image files")
    for path in paths:
        yield read_frame_rgb(path)


def video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """RGB frames of a video file (OpenCV decodes BGR; converted here)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: cannot open the video")
    try:
        while True:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def video_fps(path: str | Path) -> float | None:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return fps if fps and fps > 0 else None


def draw(frame_rgb: np.ndarray, box_xywh, score: float | None, index: int) -> np.ndarray:
    """BGR copy of the frame with the box, the frame index and the score drawn on it."""
    image = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    x, y, w, h = (int(round(v)) for v in box_xywh)
    cv2.rectangle(image, (x, y), (x + w, y + h), (0, 255, 0), 2)
    label = f"#{index}" + ("" if score is None else f"  score {score:.2f}")
    cv2.putText(image, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2, cv2.LINE_AA)
    return image


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    init_box = parse_box(args.init_box)
    cfg = load_config(args.config, args.overrides)
    tracker = build_tracker(cfg, args.checkpoint, args.device, dataset=args.dataset,
                            cached=False if args.no_cache else None)
    frames = video_frames(args.video) if args.video else folder_frames(args.frames)
    fps = args.fps or (video_fps(args.video) if args.video else None) or 30.0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = Path(args.csv) if args.csv else out.with_suffix(".csv")
    rows = ["frame,x,y,w,h,score"]
    writer = None
    try:
        for index, frame in enumerate(tqdm(frames, desc="demo", unit="frame")):
            if index == 0:
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
        logger.error("no frames read from %s", args.video or args.frames)
        return 1
    atomic_write_text(csv_path, "\n".join(rows) + "\n")
    logger.info("wrote %s and %s (%d frames)", out, csv_path, len(rows) - 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
