"""Tiny benchmark copies on disk, each in its benchmark's real format and with its quirks, for the dataset tests.

Every ``make_*`` function writes under ``root`` and returns the root. Frames are 8x8 images written with cv2. Readers
never open images, so table-driven benchmarks (UAV123, OTB, NfS), whose packaged tables fix long frame ranges, get
full-length ground truth but only their first few frame files.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

# LaSOT test sequence airplane-1: the third row is an all-zero absent row (fully occluded), the second is out of view.
LASOT_GT = np.array([[1, 2, 30, 40], [5, 6, 30, 40], [0, 0, 0, 0], [9, 10, 31, 41]], dtype=np.float64)
LASOT_FULL_OCCLUSION = [0, 0, 1, 0]
LASOT_OUT_OF_VIEW = [0, 1, 0, 0]
LASOT_VISIBLE = [True, False, False, True]

GOT_TRAIN_GT = np.array([[10.5, 20.25, 30, 40], [11, 21, 30, 40], [12, 22, 30, 40], [0, 0, 0, 0]])
GOT_TRAIN_ABSENCE = [0, 0, 0, 1]
GOT_TRAIN_COVER = [8, 0, 4, 0]
GOT_TRAIN_VISIBLE = [True, False, True, False]

# Real LaSOT test rows (official_spec / the issue): lion-5 line 553 and tiger-6 line 118. The fixture sequences are
# four frames long and hold these rows on line 3 (lion-5, flagged out of view) and line 2 (tiger-6, flagged present).
LION5_ROW = "1,1,-1,-1"
TIGER6_ROW = "613,731,247,-11"
LION5_GT = f"5,5,10,10\n6,5,10,10\n{LION5_ROW}\n8,5,10,10\n"
LION5_OUT_OF_VIEW = "0,0,1,0"
TIGER6_GT = f"10,10,20,20\n{TIGER6_ROW}\n12,10,20,20\n14,10,20,20\n"

TNL2K_NAME = "test_015_Sord_video_Q01_done"
TNL2K_GT = np.array([[-3, 4, 20, 30], [0, 0, 0, 0], [5, -2, 20, 30]], dtype=np.float64)
TNL2K_FRAMES = ["00000491.jpg", "00000492.png", "00000493.jpg"]


def write_image(path: Path, value: int = 128) -> None:
    """An 8x8 BGR image; the suffix (.jpg/.png) picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((8, 8, 3), value, dtype=np.uint8)
    image[0, 0] = (0, 0, 255)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: cv2 could not write the fixture image")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def box_lines(boxes, delimiter: str = ",") -> str:
    """Rows of x,y,w,h written the way the benchmarks write them (integers without a decimal point)."""
    def fmt(v: float) -> str:
        return "NaN" if np.isnan(v) else (str(int(v)) if float(v).is_integer() else repr(float(v)))
    return "".join(delimiter.join(fmt(v) for v in row) + "\n" for row in boxes)


def _write_lasot_sequence(seq: Path, num_frames: int, groundtruth: str, full_occlusion: str, out_of_view: str,
                          nlp: str | None = None, images: bool = True) -> None:
    """One LaSOT-layout sequence folder; the text files are written exactly as given (trailing newlines vary
    on purpose, as they do in the real files). ``images=False``: no ``img/`` folder (the toolkits' annotations)."""
    for i in range(1, num_frames + 1 if images else 1):
        write_image(seq / "img" / f"{i:08d}.jpg")
    write_text(seq / "groundtruth.txt", groundtruth)
    write_text(seq / "full_occlusion.txt", full_occlusion)
    write_text(seq / "out_of_view.txt", out_of_view)
    if nlp is not None:
        write_text(seq / "nlp.txt", nlp)


def make_lasot(root: Path, with_list: bool = True) -> Path:
    """LaSOT test copy: ``airplane-1`` (4 frames, flags, nlp.txt) and ``rubicCube-1`` (3 frames, no nlp.txt);
    ``testing_set.txt`` lists both when ``with_list``."""
    _write_lasot_sequence(root / "airplane" / "airplane-1", 4, box_lines(LASOT_GT),
                          ",".join(map(str, LASOT_FULL_OCCLUSION)) + "\n", ",".join(map(str, LASOT_OUT_OF_VIEW)),
                          "white airplane landing on the runway\n")
    _write_lasot_sequence(root / "rubicCube" / "rubicCube-1", 3, "3,4,5,6\n4,5,6,7\n5,6,7,8\n", "0,0,0", "0,0,0")
    if with_list:
        write_text(root / "testing_set.txt", "airplane-1\nrubicCube-1\n")
    return root


def make_lasot_real_rows(root: Path, images: bool = True) -> Path:
    """LaSOT test copy with the real odd rows: ``lion-5`` (``1,1,-1,-1`` on line 3, out of view there) and
    ``tiger-6`` (``613,731,247,-11`` on line 2, flagged present), 4 frames each, listed in ``testing_set.txt``;
    ``images=False`` leaves out every ``img/`` folder, as the toolkits' annotation download does."""
    _write_lasot_sequence(root / "lion" / "lion-5", 4, LION5_GT, "0,0,0,0\n", LION5_OUT_OF_VIEW + "\n",
                          "lion walking on the grass\n", images=images)
    _write_lasot_sequence(root / "tiger" / "tiger-6", 4, TIGER6_GT, "0,0,0,0", "0,0,0,0", images=images)
    write_text(root / "testing_set.txt", "lion-5\ntiger-6\n")
    return root


def make_lasot_ext(root: Path, images: bool = True) -> Path:
    """LaSOT_ext copy with the packaged name ``atv-1`` (3 frames; ``images=False``: no ``img/``)."""
    _write_lasot_sequence(root / "atv" / "atv-1", 3, "1,1,4,4\n2,2,4,4\n3,3,4,4\n", "0,0,0\n", "0,0,1\n",
                          "red atv on sand", images=images)
    return root


def make_got10k(root: Path) -> Path:
    """GOT-10k copy: train (3 sequences; the first with labels and meta_info.ini, the others without labels),
    val (1 sequence with labels), test (1 sequence, 5 frames, first-frame ground truth)."""
    train = root / "train"
    names = [f"GOT-10k_Train_{i:06d}" for i in (1, 2, 3)]
    write_text(train / "list.txt", "\n".join(names) + "\n")
    _got_sequence(train / names[0], GOT_TRAIN_GT, GOT_TRAIN_ABSENCE, GOT_TRAIN_COVER,
                  meta="[METAINFO]\nurl: https://example.org/v\nbegin: 00:00:01\nobject_class: ivory gull\n"
                       "motion_class: flying\nresolution: (1280, 720)\n")
    for name in names[1:]:
        _got_sequence(train / name, np.array([[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]], dtype=np.float64))
    write_text(root / "val" / "list.txt", "GOT-10k_Val_000001\n")
    _got_sequence(root / "val" / "GOT-10k_Val_000001", np.array([[5, 5, 10, 10]] * 3, dtype=np.float64),
                  absence=[0, 0, 0], cover=[8, 8, 1])
    write_text(root / "test" / "list.txt", "GOT-10k_Test_000001\n")
    test_seq = root / "test" / "GOT-10k_Test_000001"
    for i in range(1, 6):
        write_image(test_seq / f"{i:08d}.jpg")
    write_text(test_seq / "groundtruth.txt", "100.1234,200.5,30.25,40.75\n")
    return root


def _got_sequence(folder: Path, gt, absence=None, cover=None, meta: str | None = None) -> None:
    for i in range(1, len(gt) + 1):
        write_image(folder / f"{i:08d}.jpg")
    write_text(folder / "groundtruth.txt", box_lines(gt))
    if absence is not None:
        write_text(folder / "absence.label", "".join(f"{v}\n" for v in absence))
        write_text(folder / "cover.label", "".join(f"{v}\n" for v in cover))
        write_text(folder / "cut_by_image.label", "".join("0\n" for _ in absence))
    if meta is not None:
        write_text(folder / "meta_info.ini", meta)


def make_trackingnet(root: Path) -> Path:
    """TrackingNet copy: TEST with ``vidTest_0`` (12 unpadded frames, first-frame GT), TRAIN_0 with ``vidA_0``
    (3 frames) and TRAIN_1 with ``vidB_0`` (2 frames)."""
    for i in range(12):
        write_image(root / "TEST" / "frames" / "vidTest_0" / f"{i}.jpg")
    write_text(root / "TEST" / "anno" / "vidTest_0.txt", "10,20,30,40\n")
    for chunk, name, rows in (("TRAIN_0", "vidA_0", 3), ("TRAIN_1", "vidB_0", 2)):
        for i in range(rows):
            write_image(root / chunk / "frames" / name / f"{i}.jpg")
        write_text(root / chunk / "anno" / f"{name}.txt", box_lines([[i, i, 5, 6] for i in range(rows)]))
    return root


def make_tnl2k(root: Path, images: bool = True) -> Path:
    """TNL2K test copy with the packaged name ``test_015_Sord_video_Q01_done``: mixed .jpg/.png frames, a negative
    x, an all-zero absent row and a mixed-case language line; ``images=False`` leaves out ``imgs/`` (the toolkit's
    annotation download)."""
    seq = root / TNL2K_NAME
    for name in TNL2K_FRAMES if images else ():
        write_image(seq / "imgs" / name)
    write_text(seq / "groundtruth.txt", box_lines(TNL2K_GT))
    write_text(seq / "language.txt", "  The Man Holding A SWORD \nsecond line\n")
    return root


def table_gt(num_rows: int, nan_rows=()) -> np.ndarray:
    """Distinct rows ``[i, i + 1, 10 + i % 3, 20]`` with NaN rows at ``nan_rows``."""
    gt = np.array([[i, i + 1, 10 + i % 3, 20] for i in range(num_rows)], dtype=np.float64)
    gt[list(nan_rows)] = np.nan
    return gt


def make_uav123(root: Path) -> Path:
    """UAV123 copy: ``uav_bird1_2`` (frames 775-1477 of the shared bird1 folder, NaN rows 1 and 700) and
    ``uav_uav6`` (109 frames)."""
    write_text(root / "anno" / "UAV123" / "bird1_2.txt", box_lines(table_gt(703, nan_rows=(1, 700))))
    write_text(root / "anno" / "UAV123" / "uav6.txt", box_lines(table_gt(109)))
    for i in range(775, 778):
        write_image(root / "data_seq" / "UAV123" / "bird1" / f"{i:06d}.jpg")
    return root


def make_otb(root: Path) -> Path:
    """OTB copy: Tiger1 (init_omit 5), David (frames 300-770), Jogging_1/_2 (two GT files), Board (5 digits,
    whitespace GT), KiteSurf stored as png (pytracking's variant)."""
    write_text(root / "Tiger1" / "groundtruth_rect.txt", box_lines(table_gt(354)))
    write_text(root / "David" / "groundtruth_rect.txt", box_lines(table_gt(471)))
    write_text(root / "Jogging" / "groundtruth_rect.1.txt", box_lines(table_gt(307)))
    write_text(root / "Jogging" / "groundtruth_rect.2.txt", box_lines(table_gt(307) + 100))
    write_text(root / "Board" / "groundtruth_rect.txt", box_lines(table_gt(698), delimiter="\t"))
    write_text(root / "KiteSurf" / "groundtruth_rect.txt", box_lines(table_gt(84), delimiter=" "))
    for i in range(1, 4):
        write_image(root / "KiteSurf" / "jpg" / f"{i:04d}.png")
        write_image(root / "Board" / "img" / f"{i:05d}.jpg")
    for folder, first in (("Tiger1", 6), ("David", 300), ("Jogging", 1)):
        write_image(root / folder / "img" / f"{first:04d}.jpg")
    return root


def make_nfs(root: Path) -> Path:
    """NfS copy: ``nfs_car_jumping`` (22 frames, TAB-separated GT)."""
    write_text(root / "anno" / "nfs_car_jumping.txt", box_lines(table_gt(22), delimiter="\t"))
    for i in range(1, 4):
        write_image(root / "sequences" / "car_jumping" / f"{i:05d}.jpg")
    return root


def make_coco(root: Path) -> Path:
    """COCO 2017 train copy: 2 images, 3 annotations (one crowd), 2 categories."""
    write_image(root / "train2017" / "000000000001.jpg")
    write_image(root / "train2017" / "000000000002.jpg")
    data = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 8, "height": 8},
                   {"id": 2, "file_name": "000000000002.jpg", "width": 8, "height": 8}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 101, "image_id": 1, "category_id": 1, "bbox": [1.5, 2.0, 60.0, 70.25], "iscrowd": 0},
            {"id": 102, "image_id": 1, "category_id": 18, "bbox": [0, 0, 100, 100], "iscrowd": 1},
            {"id": 103, "image_id": 2, "category_id": 18, "bbox": [3, 4, 20, 80], "iscrowd": 0},
        ],
    }
    write_text(root / "annotations" / "instances_train2017.json", json.dumps(data))
    return root
