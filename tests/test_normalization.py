"""One image normalisation, from the config (``model.image_mean``/``image_std``) to training crops and tracker
input."""
from dataclasses import replace

import cv2
import numpy as np
import torch

from mixformerv2.config import Config, ModelConfig
from mixformerv2.data.pipeline import TripletProcessing
from mixformerv2.data.sampling import FrameRef, TripletSample
from mixformerv2.data.sequence import Sequence
from mixformerv2.imaging import IMAGENET_MEAN, IMAGENET_STD, denormalize_image, normalize_image
from mixformerv2.tracking.tracker import build_tracker

MEAN, STD = (0.5, 0.25, 0.0), (0.25, 0.5, 1.0)
TINY = ModelConfig(embed_dim=32, depth=1, num_heads=2, mlp_ratio=1.0, template_size=32, search_size=64, num_bins=8,
                   score_head=True, drop_path_rate=0.0)


def test_normalize_hand_computed_and_round_trip():
    image = np.array([[[255, 0, 51]]], dtype=np.uint8)  # one RGB pixel
    out = normalize_image(image, MEAN, STD)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([(1 - 0.5) / 0.25, (0 - 0.25) / 0.5, 0.2 / 1.0]))
    imagenet = normalize_image(image, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(imagenet[0, 0, 0], torch.tensor((1 - 0.485) / 0.229))
    frame = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    for mean, std in ((MEAN, STD), (IMAGENET_MEAN, IMAGENET_STD)):
        back = denormalize_image(normalize_image(frame, mean, std), mean, std)
        torch.testing.assert_close(back, torch.from_numpy(frame).float(), atol=1e-4, rtol=0)


def _tracker_template(cfg: Config, frame: np.ndarray) -> torch.Tensor:
    """The template tensor the network receives on ``initialize`` of a tracker built from ``cfg``."""
    tracker = build_tracker(cfg, None, "cpu", cached=True)
    seen = []
    encode = tracker.model.encode_templates
    tracker.model.encode_templates = lambda template, online: seen.append(template) or encode(template, online)
    tracker.initialize(frame, [40.0, 30.0, 16.0, 16.0])
    return seen[0][0]


def test_tracker_input_follows_the_config_normalisation():
    frame = np.full((96, 128, 3), (200, 100, 50), dtype=np.uint8)  # the template crop lies inside the frame
    default = _tracker_template(replace(Config(), model=TINY), frame)
    custom = _tracker_template(replace(Config(), model=replace(TINY, image_mean=MEAN, image_std=STD)), frame)
    rgb = torch.tensor([200, 100, 50]) / 255.0
    expected_default = (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    expected_custom = (rgb - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(default, expected_default.view(3, 1, 1).expand(3, 32, 32))
    torch.testing.assert_close(custom, expected_custom.view(3, 1, 1).expand(3, 32, 32))


def test_training_crops_follow_the_config_normalisation(tmp_path):
    frame = np.random.default_rng(1).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    path = tmp_path / "00000001.png"
    cv2.imwrite(str(path), frame)
    seq = Sequence("s", "video", (path,), np.array([[20.0, 10.0, 16.0, 16.0]]), np.ones(1, dtype=bool))
    ref = FrameRef("video", seq, 0)
    frames = {str(path): cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)}
    crop_pixels = frames[str(path)][2:34, 12:44]  # side ceil(16 * 2) = 32 = template size, origin (12, 2)
    templates = []
    for mean, std in ((IMAGENET_MEAN, IMAGENET_STD), (MEAN, STD)):
        cfg = replace(Config(), model=replace(TINY, image_mean=mean, image_std=std))
        cfg = replace(cfg, data=replace(cfg.data, gray_prob=0.0, flip_prob=0.0, crop_flip_prob=0.0,
                                        brightness_jitter=0.0))
        out = TripletProcessing.from_config(cfg)(np.random.default_rng(0), TripletSample((ref,), ref), frames)
        templates.append(out["template_images"][0])
        torch.testing.assert_close(templates[-1], normalize_image(crop_pixels, mean, std))
    assert not torch.allclose(templates[0], templates[1])
