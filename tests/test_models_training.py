"""Every registered model trains: forward + backward reach every trainable parameter, and frozen parameters (fixed
position embeddings, the teacher's unused ViT parameters, layers being removed, everything but the score head in the
score stage, a teacher beside its student) get no gradient and stay bit-identical through an AdamW step with weight
decay (official_spec §3.4-3.5).

Models are built small through ``create_model`` overrides; depth, MLP ratio, bins and head type stay the variant's.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixformerv2.models import MixViT, create_model, list_models, model_config

SMALL = dict(embed_dim=32, num_heads=2, template_size=32, search_size=64, head_channels=16, drop_path_rate=0.0)
STUDENTS = [name for name in list_models() if not name.startswith("mixvit")]

# Frozen by construction: the fixed sin-cos position embeddings, and in the teacher the ImageNet ViT parameters
# kept only so that the released files load strictly.
FROZEN_ALWAYS = {"backbone.pos_embed_t", "backbone.pos_embed_s"}
FROZEN_TEACHER = FROZEN_ALWAYS | {"backbone.cls_token", "backbone.pos_embed", "backbone.norm.weight",
                                  "backbone.norm.bias", "backbone.head.weight", "backbone.head.bias"}


def small_model(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **{**SMALL, **overrides}).train()


def inputs(model, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t, s = model.backbone.template_size, model.backbone.search_size
    return (torch.randn(batch, 3, t, t, generator=g), [torch.randn(batch, 3, t, t, generator=g)],
            torch.randn(batch, 3, s, s, generator=g))


def training_loss(out, score: bool = True) -> torch.Tensor:
    """The terms the stages train on, against fixed targets: L1 on the box, cross-entropy on the side bins or corner
    maps (as the distillation KL does), and BCE on the score logit when there is one and ``score`` is set.

    A plain sum of the outputs would not do: the side logits end in a LayerNorm and the corner maps pass through
    BatchNorm, whose outputs sum to a constant, so a sum sends no gradient upstream."""
    batch = out.box_xyxy_norm.shape[0]
    target_box = torch.tensor([[0.3, 0.35, 0.6, 0.7]]).expand(batch, 4)
    logits = out.side_logits if hasattr(out, "side_logits") else out.corner_logits
    bins = logits.shape[-1]
    target_bins = torch.arange(batch * logits.shape[1]).view(batch, -1) * 7 % bins
    loss = F.l1_loss(out.box_xyxy_norm, target_box) + F.cross_entropy(logits.flatten(0, 1), target_bins.flatten())
    if score and getattr(out, "score_logit", None) is not None:
        loss = loss + F.binary_cross_entropy_with_logits(out.score_logit, (torch.arange(batch) % 2).float())
    return loss


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def adamw_step(*modules: torch.nn.Module) -> None:
    """One AdamW step over *all* parameters (frozen ones included, as a careless optimiser set-up would pass them),
    with a learning rate and weight decay large enough that any update shows."""
    params = [p for m in modules for p in m.parameters()]
    torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1).step()


def assert_gradients(model: torch.nn.Module, no_grad: set[str]) -> None:
    """Parameters in ``no_grad`` have no ``.grad``; every other one has a finite gradient that is not all zero."""
    for name, p in model.named_parameters():
        if name in no_grad:
            assert p.grad is None, f"{name}: frozen or unused, but has a gradient"
            continue
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: gradient is all zero"


def assert_step_moves_only_trainable(model, before: dict[str, torch.Tensor], frozen: set[str]) -> None:
    after = model.state_dict()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(after[name], before[name]), f"{name}: frozen, but the optimiser step changed it"
        else:
            assert not torch.equal(after[name], before[name]), f"{name}: trainable, but the step left it unchanged"


# ---------------------------------------------------------------------------------------------- every model

@pytest.mark.parametrize("name", list_models())
def test_forward_backward_reaches_every_trainable_parameter_and_the_step_spares_frozen_ones(name):
    model = small_model(name)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == (FROZEN_TEACHER if isinstance(model, MixViT) else FROZEN_ALWAYS)
    before = snapshot(model)
    out = model(*inputs(model))
    training_loss(out).backward()
    assert_gradients(model, no_grad=frozen)
    adamw_step(model)
    assert_step_moves_only_trainable(model, before, frozen)
    # the fixed embeddings are still the sin-cos table after the step, not just "unchanged by chance"
    rebuilt = small_model(name, seed=123)
    for key in FROZEN_ALWAYS:
        assert torch.equal(model.state_dict()[key], rebuilt.state_dict()[key])


@pytest.mark.parametrize("name", [n for n in STUDENTS if model_config(n).score_head])
def test_box_losses_alone_leave_the_score_head_without_gradient(name):
    """Stages 1-2 train on the box terms only: the score head is not in the loss and legitimately gets nothing."""
    model = small_model(name)
    training_loss(model(*inputs(model)), score=False).backward()
    score_head = {f"score_head.{n}" for n, _ in model.score_head.named_parameters()}
    assert_gradients(model, no_grad=FROZEN_ALWAYS | score_head)


# ---------------------------------------------------------------------------------------------- stage freezing

def freeze(model: torch.nn.Module, trainable) -> set[str]:
    """Set ``requires_grad`` from a name predicate (as ``get_optimizer_scheduler`` does); returns the frozen names."""
    frozen = set()
    for name, p in model.named_parameters():
        keep = p.requires_grad and trainable(name)
        p.requires_grad_(keep)
        if not keep:
            frozen.add(name)
    return frozen


@pytest.mark.parametrize("name", STUDENTS)
def test_score_stage_trains_only_the_score_head(name):
    """Official score stage: only parameters whose name contains "score" train, on the full forward."""
    model = small_model(name, score_head=True)
    frozen = freeze(model, lambda n: "score" in n)
    assert frozen and all(not n.startswith("score_head.") for n in frozen)
    before = snapshot(model)
    training_loss(model(*inputs(model))).backward()  # box terms included: the frozen backbone still gets nothing
    assert_gradients(model, no_grad=frozen)
    adamw_step(model)
    assert_step_moves_only_trainable(model, before, frozen)


@pytest.mark.parametrize("name", STUDENTS)
def test_layers_being_removed_are_frozen_while_gradients_pass_through_them(name):
    """Deep-to-shallow stage: the blocks to remove (every third from 0; 0, 3, 6, 9 of 12 as officially) are frozen
    and faded; the blocks before them, the patch embedding included, still learn through their residual paths."""
    model = small_model(name)
    depth = model.backbone.depth
    removed = set(range(0, depth, 3))
    frozen = freeze(model, lambda n: not any(n.startswith(f"backbone.blocks.{i}.") for i in removed))
    assert {n.split(".")[2] for n in frozen if n.startswith("backbone.blocks.")} == {str(i) for i in removed}
    before = snapshot(model)
    scales = [0.5 if i in removed else 1.0 for i in range(depth)]
    template, online, search = inputs(model)
    training_loss(model(template, online, search, block_scales=scales)).backward()
    assert_gradients(model, no_grad=frozen)
    adamw_step(model)
    assert_step_moves_only_trainable(model, before, frozen)


def test_frozen_teacher_beside_a_student_is_untouched():
    """Distillation: the teacher is frozen and in eval mode; a student step, with the teacher's parameters handed to
    the same optimiser, changes none of its parameters or batch-norm statistics."""
    teacher = small_model("mixvit_b_teacher").eval().requires_grad_(False)
    student = small_model("mixformerv2_b12_stage1")
    before = snapshot(teacher)
    template, online, search = inputs(student)
    target = teacher(template, online, search)
    out = student(template, online, search)
    loss = training_loss(out) + F.l1_loss(out.box_xyxy_norm, target.box_xyxy_norm)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert_gradients(student, no_grad=FROZEN_ALWAYS)
    adamw_step(student, teacher)
    after = teacher.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # buffers (BN running stats) included
