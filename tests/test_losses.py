"""Masked training losses against torch.nn.functional on hand-made batches, all-missing ones included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tsav_deploy.train.losses import au_loss, ccc_loss, expression_loss, tsav_loss

NAN = float("nan")


def ccc_numpy(p, t):
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    return 2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)


def test_expression_loss_with_hard_and_soft_labels():
    torch.manual_seed(0)
    logits = torch.randn(6, 7)
    hard = torch.tensor([3, -1, 0, 6, -1, 4])
    labelled = hard >= 0
    reference = F.cross_entropy(logits[labelled], hard[labelled])
    assert expression_loss(logits, hard).item() == pytest.approx(reference.item(), rel=1e-6)

    soft = torch.softmax(torch.randn(6, 7), dim=1)
    soft[[1, 4]] = NAN  # unlabelled rows
    keep = ~torch.isnan(soft).any(dim=1)
    assert expression_loss(logits, soft).item() == pytest.approx(
        F.cross_entropy(logits[keep], soft[keep]).item(), rel=1e-6
    )


def test_au_loss_matches_bce_over_fully_annotated_frames():
    torch.manual_seed(1)
    logits = torch.randn(5, 8)
    target = torch.randint(0, 2, (5, 8))
    target[1] = -1
    target[3, 5] = -1  # partly annotated: left out
    keep = torch.tensor([True, False, True, False, True])
    reference = F.binary_cross_entropy_with_logits(logits[keep], target[keep].float())
    assert au_loss(logits, target).item() == pytest.approx(reference.item(), rel=1e-6)


def test_ccc_loss_is_one_minus_ccc_over_labelled_samples():
    torch.manual_seed(2)
    prediction = torch.randn(8)
    target = torch.tensor([0.3, NAN, -0.2, 0.9, NAN, 0.1, -0.7, 0.5])
    keep = ~torch.isnan(target)
    expected = 1 - ccc_numpy(prediction[keep].numpy(), target[keep].numpy())
    assert ccc_loss(prediction, target).item() == pytest.approx(expected, rel=1e-5)


def test_all_missing_batches_give_zero_loss_and_finite_gradients():
    logits = torch.randn(4, 17, requires_grad=True)
    total, parts = tsav_loss(
        logits,
        expression=torch.full((4,), -1),
        va=torch.full((4, 2), NAN),
        au=torch.full((4, 8), -1),
    )
    total.backward()
    assert total.item() == 0.0 and all(part.item() == 0.0 for part in parts.values())
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    # one labelled valence sample: CCC is undefined, the loss stays 0 (no NaN)
    single = torch.randn(3, requires_grad=True)
    loss = ccc_loss(single, torch.tensor([NAN, 0.4, NAN]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(single.grad).all()


def test_tsav_loss_sums_the_parts_and_trains_each_head_only_where_labelled():
    torch.manual_seed(3)
    logits = torch.randn(6, 17, requires_grad=True)
    expression = torch.tensor([1, -1, 2, -1, 0, 5])
    va = torch.tensor([[0.1, 0.2], [NAN, NAN], [-0.4, 0.3], [0.8, NAN], [0.0, -0.5], [NAN, 0.6]])
    au = torch.randint(0, 2, (6, 8))
    au[[0, 2]] = -1
    total, parts = tsav_loss(logits, expression=expression, va=va, au=au)
    assert set(parts) == {"expression", "valence", "arousal", "au"}
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)
    total.backward()
    grad = logits.grad
    assert torch.isfinite(grad).all()
    assert (grad[[1, 3], 0:7] == 0).all() and (grad[[0, 2, 4, 5], 0:7] != 0).any(dim=1).all()
    assert (grad[[1, 5], 7] == 0).all() and (grad[[1, 3], 8] == 0).all()
    assert (grad[[0, 2], 9:] == 0).all() and (grad[[1, 3, 4, 5], 9:] != 0).all()
