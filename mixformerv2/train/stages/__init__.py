"""The training stages, one module each; importing this package registers them with ``train.stage``.

* ``teacher`` (stage 0, ``teacher.py``): the MixViT teacher on ground truth;
* ``dense_to_sparse`` (stage 1, ``dense_to_sparse.py``): the MixFormerV2 student distilled from a frozen teacher.

``common.py`` holds what they share (path keys, network inputs, box loss terms, initialisation).
"""
from .dense_to_sparse import DenseToSparseStage, TeacherMismatchError, load_teacher
from .teacher import TeacherStage

__all__ = ["DenseToSparseStage", "TeacherMismatchError", "TeacherStage", "load_teacher"]
