"""``tsav evaluate`` against a scikit-learn computation of the ABAW 2020 metrics on hand-made files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score
from typer.testing import CliRunner

from tsav_deploy.cli import app

from helpers.abaw_testdata import write_task

runner = CliRunner()
LENGTHS = {"v1": 200, "v2_left": 150}


def _make_data(rng):
    """Labels (with unannotated frames) and predictions for each video, rounded as the files hold them."""
    data = {}
    for name, n in LENGTHS.items():
        va = np.round(rng.uniform(-1, 1, (n, 2)), 3)
        va_pred = np.round(np.clip(va + rng.normal(0, 0.4, (n, 2)), -1, 1), 3)
        va[rng.random(n) < 0.2] = -5
        expr = rng.integers(0, 7, n)
        expr_pred = np.where(rng.random(n) < 0.5, expr, rng.integers(0, 7, n))
        expr[rng.random(n) < 0.2] = -1
        au = (rng.random((n, 8)) < 0.3).astype(int)
        au_pred = np.where(rng.random((n, 8)) < 0.75, au, 1 - au)
        au[rng.random(n) < 0.2] = -1
        data[name] = {"VA_Set": (va, va_pred), "EXPR_Set": (expr, expr_pred), "AU_Set": (au, au_pred)}
    return data


def _write(tmp_path, data, layout):
    predictions, labels = tmp_path / "predictions", tmp_path / "labels"
    for name, tasks in data.items():
        for task, (label, prediction) in tasks.items():
            write_task(predictions / task, task, name, prediction.tolist())
            label_dir = labels / task / "Validation_Set" if layout == "annotation root" else labels / task
            write_task(label_dir, task, name, label.tolist())
    if layout == "annotation root":  # a training split beside it is not scored
        write_task(labels / "VA_Set/Training_Set", "VA_Set", "unscored", [(0.5, 0.5)])
    write_task(predictions / "VA_Set", "VA_Set", "not_labelled", [(0.1, 0.1)])  # ignored
    return predictions, labels


def _sklearn_scores(data):
    def stacked(task, which):
        return np.concatenate([data[name][task][which] for name in LENGTHS])

    va, va_pred = stacked("VA_Set", 0), stacked("VA_Set", 1)
    cccs = []
    for column in range(2):
        keep = va[:, column] != -5
        t, p = va[keep, column], va_pred[keep, column]
        r = np.corrcoef(p, t)[0, 1]
        cccs.append(2 * r * p.std() * t.std() / (p.var() + t.var() + (p.mean() - t.mean()) ** 2))
    expr, expr_pred = stacked("EXPR_Set", 0), stacked("EXPR_Set", 1)
    keep = expr != -1
    expr_f1 = f1_score(expr[keep], expr_pred[keep], labels=list(range(7)), average="macro", zero_division=0)
    expr_accuracy = accuracy_score(expr[keep], expr_pred[keep])
    au, au_pred = stacked("AU_Set", 0), stacked("AU_Set", 1)
    keep = (au != -1).all(axis=1)
    au_f1 = np.mean([f1_score(au[keep, i], au_pred[keep, i], zero_division=0) for i in range(8)])
    au_accuracy = accuracy_score(au[keep].ravel(), au_pred[keep].ravel())
    return {
        "VA": {"ccc_valence": cccs[0], "ccc_arousal": cccs[1], "ccc_mean": np.mean(cccs)},
        "EXPR": {"f1": expr_f1, "accuracy": expr_accuracy, "criterion": 0.67 * expr_f1 + 0.33 * expr_accuracy},
        "AU": {"f1": au_f1, "accuracy": au_accuracy, "criterion": 0.5 * au_f1 + 0.5 * au_accuracy},
    }


def _assert_clean_failure(result, *phrases):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert len(result.stderr.strip().splitlines()) == 1
    for phrase in phrases:
        assert phrase in result.stderr


@pytest.mark.parametrize("layout", ["annotation root", "like the predictions"])
def test_evaluate_json_equals_sklearn(tmp_path, layout):
    data = _make_data(np.random.default_rng(0))
    predictions, labels = _write(tmp_path, data, layout)

    result = runner.invoke(app, ["evaluate", str(predictions), str(labels), "--json"])

    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    expected = _sklearn_scores(data)
    assert list(got) == ["VA", "EXPR", "AU"]
    for task, scores in expected.items():
        for metric, value in scores.items():
            # VA is read as float32 (as the label tables hold it)
            assert got[task][metric] == pytest.approx(value, abs=1e-6 if task == "VA" else 1e-12), (task, metric)
        assert got[task]["videos"] == 2
    assert got["EXPR"]["frames"] == sum(int((data[n]["EXPR_Set"][0] != -1).sum()) for n in LENGTHS)


def test_evaluate_table_and_only_the_tasks_predicted(tmp_path):
    data = _make_data(np.random.default_rng(1))
    predictions, labels = _write(tmp_path, data, "annotation root")
    for task in ("VA_Set", "AU_Set"):
        for path in (predictions / task).iterdir():
            path.unlink()
        (predictions / task).rmdir()
    result = runner.invoke(app, ["evaluate", str(predictions), str(labels)])
    assert result.exit_code == 0, result.output
    assert "EXPR" in result.stdout and "criterion" in result.stdout and "AU" not in result.stdout
    expected = _sklearn_scores(data)["EXPR"]["criterion"]
    assert f"{expected:.4f}" in result.stdout


def test_missing_prediction_file(tmp_path):
    predictions, labels = _write(tmp_path, _make_data(np.random.default_rng(2)), "annotation root")
    (predictions / "AU_Set/v2_left.txt").unlink()
    result = runner.invoke(app, ["evaluate", str(predictions), str(labels)])
    _assert_clean_failure(result, "missing prediction file v2_left.txt")


def test_mismatched_line_counts(tmp_path):
    predictions, labels = _write(tmp_path, _make_data(np.random.default_rng(3)), "annotation root")
    path = predictions / "EXPR_Set/v1.txt"
    path.write_text(path.read_text() + "3\n")
    result = runner.invoke(app, ["evaluate", str(predictions), str(labels)])
    _assert_clean_failure(result, "v1.txt: 201 frame lines", "has 200")


@pytest.mark.parametrize(
    "task, line", [("EXPR_Set", "-1"), ("EXPR_Set", "7"), ("AU_Set", "0,1,0,0,0,0,0"), ("VA_Set", "-5,-5")]
)
def test_bad_prediction_line_is_reported_by_file_and_line(tmp_path, task, line):
    predictions, labels = _write(tmp_path, _make_data(np.random.default_rng(4)), "annotation root")
    path = predictions / task / "v2_left.txt"
    lines = path.read_text().splitlines()
    lines[5] = line  # frame 4, line 6
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["evaluate", str(predictions), str(labels)])
    _assert_clean_failure(result, "v2_left.txt, line 6:")


def test_missing_folders(tmp_path):
    predictions, labels = _write(tmp_path, _make_data(np.random.default_rng(5)), "annotation root")
    _assert_clean_failure(
        runner.invoke(app, ["evaluate", str(labels / "VA_Set"), str(labels)]), "no VA_Set, EXPR_Set or AU_Set"
    )
    _assert_clean_failure(
        runner.invoke(app, ["evaluate", str(predictions), str(tmp_path / "nowhere")]), "folder not found"
    )
    for path in (labels / "AU_Set/Validation_Set").iterdir():
        path.unlink()
    _assert_clean_failure(runner.invoke(app, ["evaluate", str(predictions), str(labels)]), "no label files")
