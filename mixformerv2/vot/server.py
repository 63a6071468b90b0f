"""The TraX tracker process the VOT toolkit runs: ``python -m mixformerv2.vot --config C --checkpoint K``.

The toolkit starts this process once per sequence and experiment and talks TraX over its stdin/stdout
(``trackers.ini``: see ``mixformerv2.vot.workspace.tracker_section``). The model is built and loaded once, before the
TraX handshake; each ``initialize`` request (first frame, and every re-initialisation of the supervised
experiments) starts the tracker afresh on the same model. Regions are rectangles ``x, y, w, h`` in frame pixels,
one object; every reply carries the box and, from the score head, ``confidence`` (the sigmoid score in [0, 1];
models without a score head report none). Frames come as file paths and are read with
``mixformerv2.data.sequence.read_frame_rgb``.

A user error (config, checkpoint, device, an unreadable frame, a request this tracker cannot serve) ends the process
with exit status 2 after one line ``mixformerv2.vot: error: <message>`` on stderr, which the toolkit keeps in the
tracker log; ``tools/vot.py`` finds that line and reports it. The TraX side needs the ``vot-trax`` package in this
interpreter (``pip install -e '.[vot]'``); the toolkit itself lives in its own environment (``make vot-env``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

import numpy as np

from ..utils.cli import (add_backend_args, add_config_args, add_device_arg, error_line, make_parser,
                         user_error_types)
from ..utils.errors import UserError

logger = logging.getLogger(__name__)

PROG = "mixformerv2.vot"
#: How the one-line error of this process starts; ``tools/vot.py`` looks for it in the toolkit's tracker log.
ERROR_PREFIX = f"{PROG}: error: "


class RequestError(UserError):
    """A TraX request this tracker cannot serve (not one rectangle, no image path)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.prog = PROG
    add_config_args(parser)
    parser.add_argument("--checkpoint", required=True,
                        help="official-format checkpoint; an absolute path (the toolkit runs the tracker elsewhere)")
    add_device_arg(parser)
    add_backend_args(parser)
    parser.add_argument("--dataset", default=None,
                        help="use this registered benchmark's tracker settings from the config (default: test.*)")
    parser.add_argument("--no-cache", action="store_true",
                        help="full forward every frame instead of the cached template path")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch (torch.set_num_threads; default: torch's choice)")
    return parser.parse_args(argv)


def _one_rectangle(objects, what: str) -> tuple[float, float, float, float]:
    """The single rectangle of a TraX object list as (x, y, w, h) pixels."""
    from trax import Region

    if not objects or len(objects) != 1:
        raise RequestError(f"{what}: this tracker follows one object, the request has {len(objects or [])}")
    region = objects[0][0]
    if region.type != Region.RECTANGLE:
        raise RequestError(f"{what}: expected a rectangle region, got a {region.type} region")
    return region.bounds()


def _image_path(images, what: str) -> str:
    image = images.get("color") if images else None
    if image is None:
        raise RequestError(f"{what}: the request has no color image")
    return image.path()


def serve(tracker, server, read_image: Callable[[str], np.ndarray]) -> int:
    """Answer TraX requests with ``tracker`` until the client quits. Returns the number of frames tracked.

    tracker: ``initialize(image_rgb, box_xywh)`` / ``track(image_rgb) -> TrackOutput``; server: a ``trax.Server``
    (``wait()`` -> request, ``status([(region, properties)])``); read_image: path -> (H, W, 3) uint8 RGB.
    """
    from trax import TraxStatus
    from trax.region import Rectangle

    frames = 0
    sequence_frame = 0  # frames since the last initialize, for messages
    while True:
        request = server.wait()
        if request.type == TraxStatus.QUIT:
            return frames
        if request.type == TraxStatus.INITIALIZE:
            sequence_frame = 0
            path = _image_path(request.image, "initialize")
            box_xywh = _one_rectangle(request.objects, f"initialize ({path})")
            try:
                tracker.initialize(read_image(path), box_xywh)
            except ValueError as err:  # a box the tracker cannot start from (zero size, not finite)
                raise RequestError(f"initialize ({path}): {err}") from None
            # the toolkit records the initialisation frame as such and ignores this region
            server.status([(Rectangle.create(*box_xywh), {})])
            continue
        sequence_frame += 1
        path = _image_path(request.image, f"frame {sequence_frame}")
        if request.objects:
            raise RequestError(f"frame {sequence_frame} ({path}): new objects in a frame request; this tracker "
                               "follows one object (use an experiment without multiobject)")
        out = tracker.track(read_image(path))
        properties = {} if out.score is None else {"confidence": f"{out.score:.6f}"}
        server.status([(Rectangle.create(*out.box_xywh), properties)])
        frames += 1


def run(args: argparse.Namespace) -> int:
    """Build the tracker, then serve TraX requests on stdin/stdout until the toolkit quits."""
    import torch

    from ..config import load_config
    from ..data.sequence import read_frame_rgb
    from ..tracking.tracker import build_tracker
    from ..utils.device import resolve_device

    try:
        from trax import Image, Region, Server, TraxException
    except ImportError as err:
        raise UserError(f"this interpreter ({sys.executable}) has no vot-trax ({err}); install it with "
                        "pip install -e '.[vot]'") from None
    cfg = load_config(args.config, args.overrides)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    tracker = build_tracker(cfg, args.checkpoint, device, dataset=args.dataset,
                            cached=False if args.no_cache else None, backend=args.backend,
                            precision=args.precision, export_dir=args.export_dir, compile_step=args.compile)
    logger.info("MixFormerV2 TraX server: %s, %s %s, %s path on %s", args.checkpoint, tracker.backend,
                tracker.precision, tracker.forward_path, device)
    server = Server([Region.RECTANGLE], [Image.PATH], tracker_name="MixFormerV2",
                    tracker_family="mixformerv2", metadata={"forward_path": tracker.forward_path})
    try:
        frames = serve(tracker, server, read_frame_rgb)
    except user_error_types() as err:
        try:
            server.quit(reason=error_line(err))
        except TraxException:  # the toolkit may have gone already; the error below is what matters
            logger.debug("could not send the quit message", exc_info=True)
        raise
    logger.info("toolkit quit after %d tracked frames", frames)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: a user error prints ``mixformerv2.vot: error: <message>`` on stderr and returns 2
    (``--debug``: the traceback and DEBUG logs)."""
    from ..utils.log import setup_logging

    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    try:
        return run(args)
    except user_error_types() as err:
        if args.debug:
            raise
        sys.stderr.write(f"{ERROR_PREFIX}{error_line(err)}\n")
        return 2
