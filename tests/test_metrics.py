"""ABAW 2020 metrics against scikit-learn and the challenge's CCC formula (Pearson r and standard deviations)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tsav_deploy.train.metrics import au_scores, ccc, expression_scores, va_scores


def ccc_via_pearson(x, y):
    """The ABAW baseline's formula: 2·r·σx·σy / (σx² + σy² + (μx − μy)²)."""
    r = np.corrcoef(x, y)[0, 1]
    return 2 * r * np.std(x) * np.std(y) / (np.var(x) + np.var(y) + (np.mean(x) - np.mean(y)) ** 2)


def test_ccc_matches_the_pearson_formula():
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, 500)
    for prediction in (target, 0.5 * target + 0.2, rng.uniform(-1, 1, 500), -target + rng.normal(0, 0.1, 500)):
        assert ccc(prediction, target) == pytest.approx(ccc_via_pearson(prediction, target), abs=1e-12)
    assert ccc(target, target) == pytest.approx(1.0)
    assert math.isnan(ccc([0.3, 0.3], [0.3, 0.3]))  # undefined: nothing varies, nothing differs
    assert math.isnan(ccc([], []))


def test_va_scores_ignore_unannotated_frames_per_column():
    rng = np.random.default_rng(1)
    target = rng.uniform(-1, 1, (400, 2))
    target[:50, 0] = np.nan  # valence missing, arousal present
    target[350:] = np.nan
    prediction = np.clip(target + rng.normal(0, 0.3, target.shape), -1, 1)
    prediction[np.isnan(prediction)] = 0.9  # anything: must not count
    scores = va_scores(prediction, target)
    v, a = ~np.isnan(target[:, 0]), ~np.isnan(target[:, 1])
    assert scores["ccc_valence"] == pytest.approx(ccc_via_pearson(prediction[v, 0], target[v, 0]), abs=1e-12)
    assert scores["ccc_arousal"] == pytest.approx(ccc_via_pearson(prediction[a, 1], target[a, 1]), abs=1e-12)
    assert scores["ccc_mean"] == pytest.approx((scores["ccc_valence"] + scores["ccc_arousal"]) / 2)
    assert (scores["frames_valence"], scores["frames_arousal"]) == (300, 350)


def sklearn_expression(prediction, target):
    keep = target != -1
    f1 = f1_score(target[keep], prediction[keep], labels=list(range(7)), average="macro", zero_division=0)
    accuracy = accuracy_score(target[keep], prediction[keep])
    return f1, accuracy, 0.67 * f1 + 0.33 * accuracy


@pytest.mark.parametrize("classes", [7, 4])  # 4: three classes never occur (F1 0 in the macro mean)
def test_expression_scores_match_sklearn(classes):
    rng = np.random.default_rng(classes)
    target = rng.integers(0, classes, 1000)
    prediction = np.where(rng.random(1000) < 0.6, target, rng.integers(0, classes, 1000))
    target[rng.random(1000) < 0.15] = -1
    scores = expression_scores(prediction, target)
    f1, accuracy, criterion = sklearn_expression(prediction, target)
    assert scores["f1"] == pytest.approx(f1, abs=1e-12)
    assert scores["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert scores["criterion"] == pytest.approx(criterion, abs=1e-12)
    assert scores["frames"] == int((target != -1).sum())


def sklearn_au(prediction, target):
    keep = (target != -1).all(axis=1)
    p, t = prediction[keep], target[keep]
    f1 = np.mean([f1_score(t[:, i], p[:, i], zero_division=0) for i in range(8)])
    accuracy = accuracy_score(t.ravel(), p.ravel())
    return f1, accuracy, 0.5 * f1 + 0.5 * accuracy


def test_au_scores_match_sklearn_and_drop_frames_with_any_missing_au():
    rng = np.random.default_rng(5)
    target = (rng.random((800, 8)) < [0.1, 0.2, 0.3, 0.4, 0.5, 0.05, 0.02, 0.6]).astype(int)
    target[:, 6] = 0  # never positive: F1 0 for AU20
    prediction = np.where(rng.random((800, 8)) < 0.7, target, 1 - target)
    target[rng.random(800) < 0.1] = -1
    target[3, 2] = -1  # one missing AU drops the whole frame
    scores = au_scores(prediction, target)
    f1, accuracy, criterion = sklearn_au(prediction, target)
    assert scores["f1"] == pytest.approx(f1, abs=1e-12)
    assert scores["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert scores["criterion"] == pytest.approx(criterion, abs=1e-12)
    assert scores["frames"] == int((target != -1).all(axis=1).sum())


def test_scores_over_no_annotated_frame_are_nan():
    assert math.isnan(expression_scores(np.array([1, 2]), np.array([-1, -1]))["criterion"])
    assert math.isnan(au_scores(np.zeros((2, 8), int), -np.ones((2, 8), int))["criterion"])
    assert math.isnan(va_scores(np.zeros((2, 2)), np.full((2, 2), np.nan))["ccc_mean"])
