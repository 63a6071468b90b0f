"""Training losses: golden outputs of the official code, hand-computed cases, and the student/teacher side match."""
import math
from pathlib import Path

import pytest
import torch

from mixformerv2.models.heads import SideBinHead, soft_argmax
from mixformerv2.train.losses import (box_l1_loss, ciou_loss, corner_marginals, corner_side_targets,
                                      feature_mse, resample_bins, side_kl, target_xyxy_from_xywh)

GOLDEN = torch.load(Path(__file__).resolve().parent / "data" / "golden" / "losses.pt", weights_only=False)


def boxes(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def ciou_with_grad(pred, target):
    pred = pred.clone().requires_grad_(True)
    loss, iou = ciou_loss(pred, target)
    loss.backward()
    return loss.item(), iou, pred.grad


@pytest.mark.parametrize("case", ["near", "mid", "far"])
def test_ciou_matches_official(case):
    ref = GOLDEN["ciou"][case]
    loss, iou, grad = ciou_with_grad(ref["pred_xyxy"], ref["target_xyxy"])
    assert abs(loss - ref["loss"].item()) <= 1e-6
    assert (iou - ref["iou"]).abs().max() <= 1e-6
    assert (grad - ref["grad_pred"]).abs().max() <= 1e-6


def test_ciou_of_identical_boxes_is_the_limit_not_nan():
    ref = GOLDEN["ciou"]["same"]
    assert torch.isnan(ref["loss"])  # the official 0 / 0
    loss, iou, grad = ciou_with_grad(ref["pred_xyxy"], ref["target_xyxy"])
    assert loss == 0.0 and torch.equal(iou, ref["iou"]) and torch.equal(iou, torch.ones_like(iou))
    assert torch.equal(grad, torch.zeros_like(grad))


def test_ciou_low_iou_has_no_aspect_term():
    # IoU = 2 / (4 + 6 - 2) = 1/4; centres (1, 1), (2.5, 1): rho^2 = 2.25; enclosure 4 x 2: c^2 = 20; alpha = 0
    loss, iou, _ = ciou_with_grad(boxes([0, 0, 2, 2]), boxes([1, 0, 4, 2]))
    assert iou.tolist() == [0.25]
    assert loss == pytest.approx(1 - (0.25 - 2.25 / 20), abs=1e-12)


def test_ciou_high_iou_has_the_gated_aspect_term():
    # 4 x 2 inside 4 x 3: IoU = 8 / 12; centres 0.5 apart vertically, enclosure 4 x 3: u = 0.25 / 25
    loss, iou, _ = ciou_with_grad(boxes([0, 0, 4, 2]), boxes([0, 0, 4, 3]))
    v = 4 / math.pi ** 2 * (math.atan(4 / 3) - math.atan(2)) ** 2
    alpha = v / (1 - 2 / 3 + v)
    assert iou.item() == pytest.approx(2 / 3, abs=1e-12)
    assert loss == pytest.approx(1 - (2 / 3 - 0.01 - alpha * v), abs=1e-12)


def test_ciou_alpha_has_no_gradient():
    # a prediction strictly inside the 4 x 3 target: IoU = w h / 12, enclosure = target (c^2 = 25)
    pred, target = boxes([0.1, 0.5, 3.9, 2.4]), boxes([0, 0, 4, 3])
    loss, iou, grad = ciou_with_grad(pred, target)
    v = 4 / math.pi ** 2 * (math.atan(4 / 3) - math.atan(2)) ** 2
    alpha = v / (1 - 3.8 * 1.9 / 12 + v)  # IoU 0.6 > 0.5

    def frozen_alpha_loss(p):  # 1 - (IoU - u - alpha v) with alpha a constant
        w, h = p[2] - p[0], p[3] - p[1]
        u = (((p[0] + p[2]) / 2 - 2) ** 2 + ((p[1] + p[3]) / 2 - 1.5) ** 2) / 25
        return 1 - (w * h / 12 - u - alpha * 4 / math.pi ** 2 * (math.atan(4 / 3) - torch.atan(w / h)) ** 2)

    p = pred[0].clone().requires_grad_(True)
    expected = frozen_alpha_loss(p)
    expected.backward()
    assert loss == pytest.approx(expected.item(), abs=1e-12)
    assert torch.allclose(grad[0], p.grad, rtol=0, atol=1e-12)


def test_ciou_disjoint_boxes():
    # IoU 0; centres (0.5, 0.5) and (2.5, 0.5): rho^2 = 4; enclosure 3 x 1: c^2 = 10
    loss, iou, _ = ciou_with_grad(boxes([0, 0, 1, 1]), boxes([2, 0, 3, 1]))
    assert iou.tolist() == [0.0] and loss == pytest.approx(1.4, abs=1e-12)


def test_ciou_zero_area_boxes():
    target = boxes([0, 0, 2, 2])
    # flat prediction through the target's centre: IoU 0, u 0, v = 4/pi^2 (pi/4 - pi/2)^2 = 1/4 (alpha 0)
    loss, iou, grad = ciou_with_grad(boxes([0, 1, 2, 1]), target)
    assert iou.tolist() == [0.0] and loss == pytest.approx(1.0, abs=1e-12)
    assert torch.isfinite(grad).all()  # atan(w / 0) has a NaN gradient in the official code
    # a point box has no aspect ratio: v = 0
    loss, iou, grad = ciou_with_grad(boxes([1, 1, 1, 1]), target)
    assert iou.tolist() == [0.0] and loss == pytest.approx(1.0, abs=1e-12) and torch.isfinite(grad).all()
    # two different flat boxes: union 0 -> IoU 0; centres 0.5 apart, enclosure 3 x 0: u = 0.25 / 9
    loss, iou, grad = ciou_with_grad(boxes([0, 1, 2, 1]), boxes([0, 1, 3, 1]))
    assert iou.tolist() == [0.0] and loss == pytest.approx(1 + 0.25 / 9, abs=1e-12) and torch.isfinite(grad).all()
    # identical flat or point boxes: the limit
    for box in ([0, 1, 2, 1], [1, 1, 1, 1]):
        loss, iou, grad = ciou_with_grad(boxes(box), boxes(box))
        assert iou.tolist() == [1.0] and loss == 0.0 and torch.equal(grad, torch.zeros_like(grad))


def test_ciou_rejects_bad_input():
    good = boxes([0, 0, 1, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="pred_xyxy: row 1"):
        ciou_loss(boxes([0, 0, 1, 1], [0, float("nan"), 1, 1]), good)
    with pytest.raises(ValueError, match="target_xyxy: row 0 .* x2 < x1"):
        ciou_loss(good, boxes([1, 0, 0, 1], [0, 0, 1, 1]))
    with pytest.raises(ValueError, match="same non-empty"):
        ciou_loss(good, good[:1])


def test_box_l1_and_target():
    assert box_l1_loss(torch.zeros(1, 4), torch.tensor([[1.0, 2.0, 3.0, 4.0]])).item() == 2.5
    target = target_xyxy_from_xywh(torch.tensor([[-0.1, 0.2, 0.5, 0.9]]))
    assert torch.allclose(target, torch.tensor([[0.0, 0.2, 0.4, 1.0]]))


@pytest.mark.parametrize("size", ["F18", "F72"])
def test_corner_marginals_and_kl_match_official(size):
    ref = GOLDEN["kl"][size]
    marginals = corner_marginals(ref["prob_tl"], ref["prob_br"])
    assert (marginals - ref["marginals"]).abs().max() <= 1e-6
    b, f = ref["prob_tl"].shape[0], ref["marginals"].shape[-1]
    square = corner_marginals(ref["prob_tl"].view(b, f, f), ref["prob_br"].view(b, f, f))
    assert torch.equal(square, marginals)
    logits = ref["student_logits"].clone().requires_grad_(True)
    kl = side_kl(logits, marginals)
    assert abs(kl.item() - ref["kl"].item()) <= 1e-6
    kl.backward()
    # d/dlogits of (1 / 4B) sum p log(p / softmax) = (softmax - p) / 4B
    expected = (ref["student_logits"].softmax(-1) - marginals) / (4 * b)
    assert (logits.grad - expected).abs().max() <= 1e-12


def test_corner_marginals_of_a_hand_made_map():
    tl = torch.zeros(1, 3, 3)
    tl[0, 0, 1] = tl[0, 2, 2] = 0.5  # [b, y, x]
    br = torch.zeros(1, 3, 3)
    br[0, 1, 0] = 1.0
    marginals = corner_marginals(tl.view(1, 9), br.view(1, 9))
    expected = torch.tensor([[[0, 0.5, 0.5], [0.5, 0, 0.5], [1, 0, 0], [0, 1, 0]]])  # left, top, right, bottom
    assert torch.equal(marginals, expected)
    with pytest.raises(ValueError, match="prob_tl"):
        corner_marginals(torch.zeros(1, 10), torch.zeros(1, 10))


def test_side_kl_by_hand():
    logits = torch.zeros(2, 4, 2)  # q = (1/2, 1/2)
    target = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).view(2, 1, 2).expand(2, 4, 2)
    # sample 0: KL = log 2 on every side, sample 1: 0 -> batch mean log 2 / 2, mean over sides the same
    assert side_kl(logits, target).item() == pytest.approx(math.log(2) / 2, abs=1e-7)
    with pytest.raises(ValueError, match="not distributions"):
        side_kl(logits, torch.randn(2, 4, 2))
    with pytest.raises(ValueError, match=r"\(B, 4, K\)"):
        side_kl(logits, target[:, :, :1])


def test_resample_bins_by_hand():
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    assert resample_bins(p, 4) is p
    # points 0, 1/4, 1/2, 3/4 onto points 0, 1/2: the last one is past 1/2 and joins it
    assert torch.allclose(resample_bins(p, 2), torch.tensor([[0.2, 0.8]], dtype=torch.float64))
    # points 0, 1/3, 2/3 onto points 0, 1/2: 1/3 splits 1/3 : 2/3 between them
    three = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    assert torch.allclose(resample_bins(three, 2), torch.tensor([0.3 + 0.1, 0.2 + 0.4], dtype=torch.float64))
    # points 0, 1/2 onto quarters
    assert torch.allclose(resample_bins(torch.tensor([0.25, 0.75]), 4), torch.tensor([0.25, 0, 0.75, 0]))


@pytest.mark.parametrize("source, target", [(72, 96), (18, 72), (96, 72), (72, 18)])
def test_resample_bins_keeps_mass_and_mean(source, target):
    probs = torch.rand(5, 4, source, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    probs[..., -3:] = 0  # keep the mass inside [0, (K - 1) / K] so that the mean is kept exactly
    probs = probs / probs.sum(-1, keepdim=True)
    out = resample_bins(probs, target)
    assert out.shape == (5, 4, target) and (out >= 0).all()
    assert torch.allclose(out.sum(-1), torch.ones(5, 4, dtype=torch.float64), rtol=0, atol=1e-12)
    mean_in = probs @ (torch.arange(source, dtype=torch.float64) / source)
    mean_out = out @ (torch.arange(target, dtype=torch.float64) / target)
    assert torch.allclose(mean_in, mean_out, rtol=0, atol=1e-12)


def test_resample_bins_past_the_last_point_moves_less_than_a_bin():
    probs = torch.zeros(96, dtype=torch.float64)
    probs[-1] = 1.0  # 95/96, past the last of 72 points (71/72)
    out = resample_bins(probs, 72)
    assert out[-1] == 1.0 and out.sum() == 1.0


def test_feature_mse():
    student = [torch.zeros(1, 2, 3, requires_grad=True), torch.zeros(1, 2, 3), torch.full((1, 2, 3), 3.0)]
    teacher = [torch.ones(1, 2, 3, requires_grad=True), torch.zeros(1, 2, 3)]
    assert feature_mse(student[:1], teacher[:1]).item() == 1.0
    # pairs (0, 0) and (2, 1): squared errors 1 and 9
    loss = feature_mse(student, teacher, student_layers=[0, 2], teacher_layers=[0, 1])
    assert loss.item() == 5.0
    loss.backward()
    assert student[0].grad is not None and teacher[0].grad is None
    with pytest.raises(ValueError, match="teacher layer 5 does not exist in 2 blocks"):
        feature_mse(student, teacher, [0], [5])
    with pytest.raises(ValueError, match="pair 0"):
        feature_mse([torch.zeros(1, 2, 3)], [torch.zeros(1, 2, 4)])


def one_hot_logits(index: torch.Tensor, num_bins: int) -> torch.Tensor:
    """(..., ) bin indices -> (..., num_bins) logits whose softmax is a one-hot distribution."""
    logits = torch.full((*index.shape, num_bins), -1e4, dtype=torch.float64)
    return logits.scatter(-1, index.unsqueeze(-1), 0.0)


@pytest.mark.parametrize("num_bins", [96, 72, 48])
def test_teacher_marginals_and_student_sides_agree_on_a_box(num_bins):
    """A teacher corner map and a student side distribution concentrated at one box decode to the same box."""
    f = 72
    box = torch.tensor([[0.25, 0.1, 0.7, 0.8], [0.05, 0.4, 0.9, 0.95]], dtype=torch.float64)  # xyxy
    b = len(box)
    # teacher: one-hot corner maps at the nearest cell; soft_argmax reads cell (y, x) as (x / F, y / F)
    cells = (box * f).round().long()
    maps = torch.zeros(b, 2, f, f, dtype=torch.float64)
    rows = torch.arange(b)
    maps[rows, 0, cells[:, 1], cells[:, 0]] = 1.0
    maps[rows, 1, cells[:, 3], cells[:, 2]] = 1.0
    teacher_tl, _ = soft_argmax(maps[:, :1].log())
    teacher_br, _ = soft_argmax(maps[:, 1:].log())
    teacher_box = torch.cat([teacher_tl, teacher_br], dim=1)
    # student: one-hot side distributions in token order (left, right, top, bottom), decoded by the real head
    head = SideBinHead(embed_dim=8, num_bins=num_bins).double()
    student_bins = (box[:, [0, 2, 1, 3]] * num_bins).round().long()
    student_logits = one_hot_logits(student_bins, num_bins)
    student_box = head.decode(student_logits)
    assert (student_box - box).abs().max() <= 0.5 / num_bins

    targets = corner_side_targets(maps[:, 0], maps[:, 1], num_bins)
    assert targets.shape == (b, 4, num_bins)
    target_box = head.decode(targets.log())
    assert torch.allclose(target_box, teacher_box, rtol=0, atol=1e-6)  # mean kept (float32 grid)
    assert (target_box - student_box).abs().max() <= 1 / min(f, num_bins)
    # the marginals' own order (left, top, right, bottom) read as token order would give another box
    unordered = resample_bins(corner_marginals(maps[:, 0], maps[:, 1]), num_bins)
    assert (head.decode(unordered.log()) - teacher_box).abs().max() > 0.1
