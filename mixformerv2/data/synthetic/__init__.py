"""Synthetic tracking videos written in the LaSOT and GOT-10k on-disk formats.

Real benchmarks cannot be downloaded everywhere, so the quickstart, the tests and users' smoke tests run on videos
generated here and read back by the ordinary readers in ``mixformerv2.data.datasets``.

A video is a textured target (ellipse, polygon, blob, star or ring; noise, stripe or checker texture) moving
smoothly, with acceleration, scale and aspect changes, over a cluttered textured background seen by a panning and
shaking camera. Look-alike distractors pass under it; floating shapes and full-height pillars pass over it (partial
and full occlusion); its path can leave the frame (out of view). Illumination drifts, fast motion blurs, and a
little sensor noise is added before JPEG encoding.

Every annotation comes from what was drawn: the target is rasterised as a binary mask, the ground-truth box is the
bounding box of the whole mask inside the frame (occluded parts included), and the visible fraction is
``unoccluded in-frame target pixels / full target area``. From the per-frame truth:

* LaSOT (``<root>/<class>/<class>-<k>/``): ``img/%08d.jpg``; ``groundtruth.txt`` integer ``x,y,w,h`` rows,
  **1-based**, ``0,0,0,0`` while the target is out of view (a fully occluded target keeps its box);
  ``full_occlusion.txt`` / ``out_of_view.txt`` one line of comma-separated 0/1 flags (full occlusion = in frame but
  no pixel visible; out of view = no pixel in frame); ``nlp.txt`` one sentence. ``<root>/training_set.txt`` and
  ``<root>/testing_set.txt`` list the sequences.
* GOT-10k (``<root>/{train,val,test}/``): ``list.txt``; ``GOT-10k_<Split>_%06d/%08d.jpg``; ``groundtruth.txt``
  ``x,y,w,h`` with four decimals, **0-based**, ``0,0,0,0`` while out of view (test: the first row only);
  ``absence.label`` (1 = no pixel visible), ``cover.label`` (visible fraction in the nine GOT-10k levels, see
  :func:`cover_level`), ``cut_by_image.label`` (1 = part of the target lies outside the frame) and
  ``meta_info.ini`` (train and val only, as in the real test set).

Each format root also gets ``synthetic_truth.json`` (0-based boxes and fractions per frame) for tests.
Generation is deterministic: every sequence draws from its own ``np.random.Generator`` seeded from
``(seed, dataset, split, index)``, so the same seed gives byte-identical files whatever the number of workers.
"""
from .formats import generate_all, generate_got10k, generate_lasot, make_video
from .scene import (COVER_EDGES, PRESETS, TRUTH_FILE, Preset, RenderedFrame, SceneConfig, SequenceTruth,
                    SyntheticVideo, cover_level, frame_truth, load_truth, sequence_rng)

__all__ = ["COVER_EDGES", "PRESETS", "TRUTH_FILE", "Preset", "RenderedFrame", "SceneConfig", "SequenceTruth",
           "SyntheticVideo", "cover_level", "frame_truth", "generate_all", "generate_got10k", "generate_lasot",
           "load_truth", "make_video", "sequence_rng"]
