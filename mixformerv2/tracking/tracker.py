"""MixFormerV2 single-object tracker: ``initialize`` / ``track`` with the official online-template policy.

The tracker reproduces ``lib/test/tracker/mixformer2_vit_online.py`` (official_spec §4.4-4.5):

* frame 0: the template is a crop of factor ``template_factor`` around the initial box; the online template starts
  as a copy of it;
* every later frame: a search crop of factor ``search_factor`` around the previous box, one network step, the box
  mapped back to the frame (``crop.box_from_crop``) and clipped (``boxes.clip_box_xywh``, margin ``clip_margin``);
* online update: the best-scoring frame (sigmoid score above ``score_threshold`` and above the decayed maximum)
  of each ``update_interval`` frames becomes the online template at the interval boundary; if no frame scored above
  the threshold, the online template reverts to the INITIAL template. With ``online_size > 1`` the online templates
  form a set filled up to ``online_size`` and then replaced round robin (the official code crashes there).

The tracker does no file I/O, timing or drawing; see ``tracking/runner.py`` and ``tools/demo.py``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..boxes import check_box_xywh, clip_box_xywh, xyxy_to_cxcywh
from ..config import Config, TestConfig
from ..crop import Crop, box_from_crop, crop_square_xywh
from ..export.backends import BackendError, TorchBackend, build_backend
from ..imaging import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from ..utils.device import default_device
from ..utils.io import sha256_file

logger = logging.getLogger(__name__)
#: The seed of the weights of a tracker built without a checkpoint (``--random-init``).
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class TrackOutput:
    """Result of one ``track`` call.

    box_xywh: [x, y, w, h] in frame pixels (clipped to the frame); score: sigmoid confidence in [0, 1], or None for
    a model without a score head.
    """

    box_xywh: list[float]
    score: float | None


class MixFormerV2Tracker:
    """Online MixFormerV2 tracker.

    Args:
        model: the network, run by a backend of ``mixformerv2.export.backends``: an ``nn.Module`` (run by PyTorch
            in fp32) or a backend from ``build_backend`` (PyTorch at another precision, ONNX Runtime, OpenVINO).
            The network has ``forward(template, online_template, search)``, ``encode_templates`` and
            ``forward_search`` returning an object with ``box_xyxy_norm (B, 4)`` and ``score_logit (B,)`` or None.
        test_cfg: tracker settings, already specialised to the benchmark (``cfg.test.for_dataset(name)``).
        template_size: template crop side in pixels (the network's template input).
        search_size: search crop side in pixels (the network's search input).
        device: where the crops go and an ``nn.Module`` runs (it is moved there); a backend keeps its own device.
        cached: for an ``nn.Module``: encode the templates once per online-template change
            (``encode_templates``/``forward_search``) instead of running the full forward every frame; both give
            the same boxes up to float rounding. ``None``: the cached path where the model has one; ``True`` on a
            model without one raises ``ValueError``. For a backend, its own ``cached`` decides. ``forward_path``,
            ``backend`` and ``precision`` say what runs.
        image_mean, image_std: RGB normalisation of the crops, the one the weights were trained with
            (``cfg.model.image_mean``/``image_std``; ``build_tracker`` passes them).
    """

    def __init__(self, model, test_cfg: TestConfig, template_size: int, search_size: int,
                 device: torch.device | str = "cpu", cached: bool | None = None,
                 image_mean: tuple[float, ...] = IMAGENET_MEAN, image_std: tuple[float, ...] = IMAGENET_STD):
        if test_cfg.online_size < 1:
            raise ValueError(f"online_size must be >= 1, got {test_cfg.online_size}")
        if test_cfg.update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {test_cfg.update_interval}")
        self.cfg = test_cfg
        self.template_size = int(template_size)
        self.search_size = int(search_size)
        self.device = torch.device(device)
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        if isinstance(model, nn.Module):
            model = TorchBackend(model, "fp32", self.device, cached)
        elif cached is not None and bool(cached) != model.cached:
            raise ValueError(f"cached={cached}: the {model.backend} backend was built with cached={model.cached}")
        self.network = model
        self.model = getattr(model, "model", None)  # the torch module of a torch backend (None for the others)
        self._reset_state()

    @property
    def cached(self) -> bool:
        return self.network.cached

    @property
    def backend(self) -> str:
        """``torch``, ``onnxruntime`` or ``openvino``."""
        return self.network.backend

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16``, ``fp16`` or ``int8``."""
        return self.network.precision

    @property
    def calibration(self) -> str | None:
        """What a statically quantised network's activation ranges were calibrated on (OpenVINO int8), else None."""
        return getattr(self.network, "calibration", None)

    def _reset_state(self) -> None:
        self.frame_id = 0
        self.state_xywh: list[float] | None = None
        self.template: torch.Tensor | None = None  # (1, 3, Hz, Wz), the initial template, never changes
        self.online_templates: list[torch.Tensor] = []  # each (1, 3, Hz, Wz)
        self.online_max_template: torch.Tensor | None = None
        self.max_pred_score = -1.0
        self.online_forget_id = 0
        self._cache = None
        self.num_template_sets = 0  # template sets used so far (1 + changes); the cached path encodes each once

    @property
    def forward_path(self) -> str:
        """What runs every frame: ``"cached"`` (templates encoded once per change) or ``"full"`` (full forward)."""
        return "cached" if self.cached else "full"

    # ----------------------------------------------------------------------------------------------- helpers
    def _crop(self, image_rgb: np.ndarray, box_xywh, factor: float, size: int) -> tuple[torch.Tensor, Crop]:
        """Square crop around ``box_xywh`` -> ((1, 3, size, size) normalised tensor on ``device``, Crop)."""
        crop = crop_square_xywh(image_rgb, box_xywh, factor, size, padding_mask=False)
        return normalize_image(crop.image, self.image_mean, self.image_std, device=self.device).unsqueeze(0), crop

    def _online_input(self) -> torch.Tensor | list[torch.Tensor]:
        """The online template(s) as the network takes them: one (1, 3, Hz, Wz) tensor, or for ``online_size > 1``
        the list of k such tensors (their tokens follow the initial template's in one sequence, as the official
        ``set_online`` lays them out)."""
        if len(self.online_templates) == 1:
            return self.online_templates[0]
        return list(self.online_templates)

    def _encode(self) -> None:
        if self.cached:
            self._cache = self.network.encode_templates(self.template, self._online_input())
        self.num_template_sets += 1

    def _network(self, search: torch.Tensor):
        if self.cached:
            return self.network.forward_search(self._cache, search)
        return self.network.forward_full(self.template, self._online_input(), search)

    # ------------------------------------------------------------------------------------------------- API
    @torch.inference_mode()
    def initialize(self, image_rgb: np.ndarray, box_xywh) -> None:
        """Start a sequence. image_rgb: (H, W, 3) uint8 RGB; box_xywh: the target in frame pixels."""
        check_box_xywh(box_xywh, "initial box")
        self._reset_state()
        self.template, _ = self._crop(image_rgb, box_xywh, self.cfg.template_factor, self.template_size)
        self.online_templates = [self.template]
        self.online_max_template = self.template
        self.state_xywh = [float(v) for v in box_xywh]
        self._encode()

    @torch.inference_mode()
    def track(self, image_rgb: np.ndarray) -> TrackOutput:
        """Track the target into the next frame. image_rgb: (H, W, 3) uint8 RGB."""
        if self.state_xywh is None:
            raise RuntimeError("track() called before initialize()")
        self.frame_id += 1
        height, width = image_rgb.shape[:2]
        search, crop = self._crop(image_rgb, self.state_xywh, self.cfg.search_factor, self.search_size)
        out = self._network(search)
        box_cxcywh_norm = xyxy_to_cxcywh(out.box_xyxy_norm[0].float()).tolist()
        box = box_from_crop(box_cxcywh_norm, self.state_xywh, crop.resize_factor, self.search_size)
        self.state_xywh = [float(v) for v in clip_box_xywh(box, height, width, margin=self.cfg.clip_margin)]
        logit = getattr(out, "score_logit", None)  # None: no score head (static tracker, teacher)
        score = None if logit is None else float(torch.sigmoid(logit[0].float()))
        if score is not None:
            self._update_online(image_rgb, score)
        return TrackOutput(box_xywh=list(self.state_xywh), score=score)

    def _update_online(self, image_rgb: np.ndarray, score: float) -> None:
        """Official online-template rule (§4.4 steps 3-5), with a working ``online_size > 1``."""
        self.max_pred_score *= self.cfg.max_score_decay
        if score > self.cfg.score_threshold and score > self.max_pred_score:
            self.online_max_template, _ = self._crop(image_rgb, self.state_xywh, self.cfg.template_factor,
                                                     self.template_size)
            self.max_pred_score = score
        if self.frame_id % self.cfg.update_interval != 0:
            return
        previous = list(self.online_templates)
        if self.cfg.online_size == 1:
            self.online_templates = [self.online_max_template]
        elif len(self.online_templates) < self.cfg.online_size:
            self.online_templates.append(self.online_max_template)
        else:
            self.online_templates[self.online_forget_id] = self.online_max_template
            self.online_forget_id = (self.online_forget_id + 1) % self.cfg.online_size
        self.max_pred_score = -1.0
        self.online_max_template = self.template
        changed = len(previous) != len(self.online_templates) or any(
            a is not b for a, b in zip(previous, self.online_templates))
        if changed:
            self._encode()


def build_tracker(cfg: Config, checkpoint: str | Path | None, device: torch.device | str | None = None,
                  dataset: str | None = None, cached: bool | None = None, backend: str = "torch",
                  precision: str | None = None, export_dir: str | Path | None = None,
                  compile_step: bool = False) -> MixFormerV2Tracker:
    """Build the network from ``cfg.model``, load ``checkpoint`` strictly and wrap it in a tracker.

    ``dataset`` selects the per-benchmark settings of ``cfg.test`` (``cfg.test.for_dataset``: the benchmark's entry
    wins over the ``test`` defaults). Crops are normalised with ``cfg.model.image_mean``/``image_std``.
    ``checkpoint=None`` keeps the random initialisation, seeded with ``RANDOM_INIT_SEED`` (``--random-init``:
    smoke runs without trained weights). ``cached``: see
    ``MixFormerV2Tracker``. ``backend``, ``precision``, ``export_dir`` (graphs of ``tools/export.py``, checked
    against this config and checkpoint) and ``compile_step``: see ``mixformerv2.export.backends.build_backend``
    (``backend="auto"`` picks backend and precision for this machine and logs why).
    """
    from ..models import build_model, load_checkpoint

    if checkpoint is not None:
        model = build_model(cfg.model)
        load_checkpoint(model, checkpoint)
    else:  # the same weights in every worker process and every resumed run, without touching the caller's RNG
        logger.warning("no checkpoint given: tracking with randomly initialised weights (seed %d)", RANDOM_INIT_SEED)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = build_model(cfg.model)
    online_size = cfg.test.for_dataset(dataset).online_size
    if online_size > 1 and backend == "auto":
        backend = "torch"  # the exported graphs take one online template
        logger.info("--backend auto: torch (test.online_size %d > 1: the exported graphs take one)", online_size)
    elif online_size > 1 and backend != "torch":
        raise BackendError(f"--backend {backend}: the exported graphs take one online template, the config has "
                           f"test.online_size {online_size}; use --backend torch")
    device = torch.device(device or default_device())
    settings = cfg.test.for_dataset(dataset)
    network = build_backend(model, cfg.model, backend, precision, device, cached,
                            export_dir=export_dir, compile_step=compile_step,
                            checkpoint_sha256=sha256_file(checkpoint) if export_dir and checkpoint else None,
                            settings=settings)
    return MixFormerV2Tracker(network, settings, cfg.model.template_size,
                              cfg.model.search_size, device=device,
                              image_mean=cfg.model.image_mean, image_std=cfg.model.image_std)
