"""A frame cut short (a JPEG or PNG copied halfway) is an error naming the file, in tracking's frame reader and in
the dataset checker; complete images read exactly as cv2.imread reads them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import dataset_fixtures as fx
from mixformerv2.data.check import check_dataset
from mixformerv2.data.registry import get_dataset
from mixformerv2.data.sequence import FrameError, Sequence, read_frame_rgb, truncation_problem
from mixformerv2.tracking.runner import track_sequence
from mixformerv2.tracking.tracker import TrackOutput

JPEG_VARIANTS = {"baseline": [], "progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
                 "restart_markers": [cv2.IMWRITE_JPEG_RST_INTERVAL, 4]}


def noise_image(seed: int = 0, shape=(48, 64, 3)) -> np.ndarray:
    """BGR noise: it compresses badly, so the image data (not the header) fills most of the file."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(suffix: str, params=(), seed: int = 0) -> bytes:
    ok, buffer = cv2.imencode(suffix, noise_image(seed), list(params))
    assert ok
    return buffer.tobytes()


def with_exif_thumbnail(jpeg: bytes) -> bytes:
    """``jpeg`` with an APP1/Exif segment holding a complete small JPEG, as cameras write: the thumbnail's own
    end-of-image marker then sits in the header, before the main image data."""
    payload = b"Exif\x00\x00" + cv2.imencode(".jpg", noise_image(1, (8, 8, 3)))[1].tobytes()
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def cv2_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def cases() -> dict[str, bytes]:
    out = {f"jpeg_{name}": encode(".jpg", params) for name, params in JPEG_VARIANTS.items()}
    out["jpeg_exif_thumbnail"] = with_exif_thumbnail(encode(".jpg"))
    out["png"] = encode(".png")
    return out


@pytest.mark.parametrize("name", list(cases()))
def test_complete_image_reads_as_cv2_does(tmp_path, name):
    data = cases()[name]
    for label, content in (("plain", data), ("trailing_bytes", data + b"\x00" * 37)):
        path = tmp_path / f"{label}{'.png' if name == 'png' else '.jpg'}"
        path.write_bytes(content)
        image = read_frame_rgb(path)
        assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
        assert np.array_equal(image, cv2_rgb(path))
        if name == "png":  # lossless: the pixels written, in RGB order
            assert np.array_equal(image, noise_image()[..., ::-1])


@pytest.mark.parametrize("name", list(cases()))
@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_cut_image_raises_naming_the_file(tmp_path, name, fraction):
    data = cases()[name]
    path = tmp_path / f"00000007{'.png' if name == 'png' else '.jpg'}"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(FrameError, match="cut short") as info:
        read_frame_rgb(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cv2_alone_would_return_a_grey_half_frame(tmp_path):
    """Why the check exists: the decoder fills the missing half instead of failing."""
    data = encode(".jpg")
    path = tmp_path / "half.jpg"
    path.write_bytes(data[:len(data) // 2])
    assert cv2.imread(str(path)) is not None
    assert truncation_problem(data[:len(data) // 2]) == "JPEG has no end-of-image marker"
    assert truncation_problem(data) is None and truncation_problem(b"BM not a jpeg or png") is None


def test_cut_inside_the_header_and_garbage(tmp_path):
    data = with_exif_thumbnail(encode(".jpg"))
    half = data[:len(data) // 2]
    assert b"\xff\xd9" in half  # the thumbnail's end marker: looking for one anywhere would accept this half
    assert truncation_problem(half) == "JPEG has no end-of-image marker"
    assert truncation_problem(data[:40]) == "JPEG ends inside its header"
    path = tmp_path / "garbage.jpg"
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(FrameError, match="cannot be decoded"):
        read_frame_rgb(path)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_frame_rgb(tmp_path / "absent.jpg")


class ConstantTracker:
    def initialize(self, image, box_xywh):
        self.box = np.asarray(box_xywh, dtype=np.float64)

    def track(self, image):
        return TrackOutput(self.box, None)


def test_tracking_stops_at_a_cut_frame(tmp_path):
    paths = [tmp_path / f"{i:08d}.jpg" for i in range(1, 4)]
    for i, path in enumerate(paths):
        path.write_bytes(encode(".jpg", seed=i))
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:len(data) // 2])
    gt = np.tile([1.0, 2.0, 10.0, 12.0], (3, 1))
    sequence = Sequence("cut-1", "lasot", paths, gt, np.ones(3, dtype=bool))
    with pytest.raises(OSError, match=r"sequence cut-1: frame 2: .*00000003\.jpg: is cut short"):
        track_sequence(ConstantTracker(), sequence)


def test_checker_reports_cut_frames(tmp_path):
    fx.make_lasot(tmp_path / "lasot")
    jpg = tmp_path / "lasot" / "airplane" / "airplane-1" / "img" / "00000002.jpg"
    data = encode(".jpg")
    jpg.write_bytes(data[:len(data) // 2])
    fx.make_tnl2k(tmp_path / "tnl2k")
    fx.write_text(tmp_path / "tnl2k" / "TNL2K_testing_set.txt", fx.TNL2K_NAME + "\n")  # only the fixture's video
    png = tmp_path / "tnl2k" / fx.TNL2K_NAME / "imgs" / "00000492.png"
    data = encode(".png")
    png.write_bytes(data[:len(data) // 2])
    for name, path, index in (("lasot", jpg, 1), ("tnl2k", png, 1)):
        reader = get_dataset(name, root=tmp_path / name)
        assert check_dataset(reader).ok  # without decoding, a cut file is just a present file
        report = check_dataset(reader, check_images=True)
        assert dict(report.counts) == {"unreadable_frame": 1}
        assert f"{path}: frame {index} is cut short" in report.summary()
