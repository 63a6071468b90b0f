"""The training stages, one module each; importing this package registers them with ``train.stage``.

* ``teacher`` (stage 0, ``teacher.py``): the MixViT teacher on ground truth;
* ``dense_to_sparse`` (stage 1, ``dense_to_sparse.py``): the MixFormerV2 student distilled from a frozen teacher;
* ``deep_to_shallow`` (stage 2 and 2b, ``deep_to_shallow.py``): layers fade out and are pruned, distilled from the
  frozen stage-1 model;
* ``score`` (stage 3, ``score.py``): only the score head trains, on the sampler's positive and negative crops.

``common.py`` holds what they share (path keys, network inputs, box loss terms, initialisation).
"""
from .deep_to_shallow import DeepToShallowStage
from .dense_to_sparse import DenseToSparseStage, TeacherMismatchError, load_teacher
from .score import ScoreStage, auroc
from .teacher import TeacherStage

__all__ = ["DeepToShallowStage", "DenseToSparseStage", "ScoreStage", "TeacherMismatchError", "TeacherStage", "auroc",
           "load_teacher"]
