"""ABAW annotation reading, the paper's filter and the pseudo labels, against independent counts.

The independent references are plain Python over the lines the tests write (exact decimal arithmetic
with ``Fraction``) and ``np.histogram2d`` for the histograms.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from tsav_deploy.errors import CheckpointError, LabelError, TsavError
from tsav_deploy.train.filtering import filter_frames
from tsav_deploy.train.labels import match_videos, read_annotations
from tsav_deploy.train.pseudo_labels import VAHistograms, pseudo_targets
from tsav_deploy.train.statistics import label_statistics

from helpers.abaw_testdata import AU_HEADER, EXPR_HEADER, VA_HEADER, write_task

NAN = np.nan
HIST_RANGE = [[-1, 1], [-1, 1]]
HAPPY, SAD, NEUTRAL, FEAR = 4, 5, 0, 3


# --- reading -----------------------------------------------------------------------------------------


def test_reads_both_folder_styles_markers_padding_and_splits(tmp_path):
    root = tmp_path / "annotations"
    write_task(root / "VA_Set/Training_Set", "VA_Set", "v1", [(0.5, -0.25), (-5, -5), (1, -1)])
    write_task(root / "EXPR_Set/Train_Set", "EXPR_Set", "v1", [4, -1, 0, 6, 2])
    write_task(root / "AU_Set/Training_Set", "AU_Set", "v1", [(0, 1, 0, 0, 1, 0, 0, 1), (-1,) * 8])
    write_task(root / "VA_Set/Training_Set", "VA_Set", "v2_left", [(0.1, 0.2)])
    write_task(root / "VA_Set/Validation_Set", "VA_Set", "v3", [(0, 0)] * 4)
    write_task(root / "EXPR_Set/Validation_Set", "EXPR_Set", "v1", [1, 1])  # same video, other task and split
    (root / "VA_Set/Training_Set/.DS_Store").write_text("not a label file")

    annotations = read_annotations(root)

    assert sorted(annotations["train"]) == ["v1", "v2_left"]
    assert sorted(annotations["validation"]) == ["v1", "v3"]
    v1 = annotations["train"]["v1"]
    assert len(v1) == 5 and v1.va.dtype == np.float32
    np.testing.assert_array_equal(v1.va, [[0.5, -0.25], [NAN, NAN], [1, -1], [NAN, NAN], [NAN, NAN]])
    np.testing.assert_array_equal(v1.expr, [4, -1, 0, 6, 2])
    np.testing.assert_array_equal(v1.au, [[0, 1, 0, 0, 1, 0, 0, 1]] + [[-1] * 8] * 4)
    assert set(v1.files) == {"VA", "EXPR", "AU"}
    assert annotations["train"]["v2_left"].video_name == "v2"
    v1_validation = annotations["validation"]["v1"]
    np.testing.assert_array_equal(v1_validation.expr, [1, 1])
    assert np.isnan(v1_validation.va).all() and (v1_validation.au == -1).all()


BAD_FILES = [
    # (task folder, file text, line the error must name or None, phrase in the message)
    ("VA_Set", "valence;arousal\n0.1;0.2\n", 1, "header"),
    ("EXPR_Set", "Neutral,Anger,Disgust,Fear,Sadness,Happiness,Surprise\n0\n", 1, "header"),
    ("AU_Set", "", 1, "empty"),
    ("VA_Set", f"{VA_HEADER}\n", None, "not followed by any frame"),
    ("VA_Set", f"{VA_HEADER}\n0.1,0.2\n0.3,abc\n", 3, "not a number"),
    ("VA_Set", f"{VA_HEADER}\n0.1,0.2\n0.1,0.2\n0.3\n", 4, "expected 2"),
    ("AU_Set", f"{AU_HEADER}\n0,1,0,0,1,0,0\n", 2, "expected 8"),
    ("VA_Set", f"{VA_HEADER}\n0.1,0.2\n1.5,0.2\n", 3, "[-1, 1]"),
    ("VA_Set", f"{VA_HEADER}\n-4,0.1\n", 2, "[-1, 1]"),  # only -5 marks unannotated
    ("VA_Set", f"{VA_HEADER}\n0.1,0.2\nnan,0.2\n", 3, "finite"),
    ("EXPR_Set", f"{EXPR_HEADER}\n3\n7\n", 3, "0-6"),
    ("EXPR_Set", f"{EXPR_HEADER}\n2.5\n", 2, "integer"),
    ("EXPR_Set", f"{EXPR_HEADER}\n1\n\n2\n", 3, "not a number"),  # a blank line would shift every frame
    ("AU_Set", f"{AU_HEADER}\n0,0,0,0,0,0,0,1\n0,0,0,0,0,0,0,2\n", 3, "0 or 1"),
]


@pytest.mark.parametrize("task, text, line, phrase", BAD_FILES)
def test_bad_annotation_files_are_reported_by_file_and_line(tmp_path, task, text, line, phrase):
    bad = tmp_path / task / "Training_Set" / "bad.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    with pytest.raises(LabelError) as error:
        read_annotations(tmp_path)
    message = str(error.value)
    assert str(bad) in message and phrase in message and "\n" not in message
    if line is not None:
        assert f"line {line}:" in message


def test_folder_layout_errors(tmp_path):
    with pytest.raises(LabelError, match="no VA_Set, EXPR_Set or AU_Set"):
        read_annotations(tmp_path)
    (tmp_path / "VA_Set").mkdir()
    with pytest.raises(LabelError, match="no Training_Set, Train_Set or Validation_Set"):
        read_annotations(tmp_path)
    (tmp_path / "VA_Set/Training_Set").mkdir()
    (tmp_path / "VA_Set/Train_Set").mkdir()
    with pytest.raises(LabelError, match="both Training_Set and Train_Set"):
        read_annotations(tmp_path)


def test_videos_are_matched_by_name_then_by_base_name(tmp_path):
    root = tmp_path / "annotations"
    for name in ("v1", "v2_left", "v2_right", "v3_right"):
        write_task(root / "VA_Set/Training_Set", "VA_Set", name, [(0, 0)])
    write_task(root / "EXPR_Set/Validation_Set", "EXPR_Set", "v4", [1])
    videos = tmp_path / "videos"
    for relative in ("batch1/v1.mp4", "batch2/v2.avi", "batch2/v3_right.MKV", "notes.txt"):
        (videos / relative).parent.mkdir(parents=True, exist_ok=True)
        (videos / relative).write_bytes(b"")

    match = match_videos(read_annotations(root), videos)

    assert match.videos == {
        "v1": videos / "batch1/v1.mp4",
        "v2_left": videos / "batch2/v2.avi",
        "v2_right": videos / "batch2/v2.avi",
        "v3_right": videos / "batch2/v3_right.MKV",
    }
    assert match.missing == [root / "EXPR_Set/Validation_Set/v4.txt"]
    with pytest.raises(LabelError, match="v4.txt: no video v4"):
        match.raise_if_missing()
    (videos / "batch3").mkdir()
    (videos / "batch3/v1.avi").write_bytes(b"")
    with pytest.raises(LabelError, match="two videos named 'v1'"):
        match_videos(read_annotations(root), videos)


# --- filter ------------------------------------------------------------------------------------------


def test_filter_rules_on_hand_picked_frames(tmp_path):
    frames = [  # valence, arousal, expression, kept?
        ("-0.01", "0.5", HAPPY, False),
        ("0", "0.5", HAPPY, True),  # the rule is valence < 0
        ("0.01", "0", SAD, False),
        ("0", "-0.9", SAD, True),
        ("0.3", "0.4", NEUTRAL, True),  # intensity exactly 0.5 is kept
        ("0.3", "0.41", NEUTRAL, False),
        ("-0.6", "-5", NEUTRAL, True),  # intensity needs both labels
        ("-5", "-5", HAPPY, True),  # an expression-only frame stays (pseudo valence may come)
        ("-0.9", "0.9", 1, True),
    ]
    write_task(tmp_path / "VA_Set/Training_Set", "VA_Set", "v", [f"{v},{a}" for v, a, _, _ in frames])
    write_task(tmp_path / "EXPR_Set/Training_Set", "EXPR_Set", "v", [e for _, _, e, _ in frames])
    result = filter_frames(read_annotations(tmp_path)["train"]["v"])
    np.testing.assert_array_equal(result.keep, [kept for *_, kept in frames])
    assert result.removed == {
        "out_of_range": 0,
        "happy_negative_valence": 1,
        "sad_positive_valence": 1,
        "neutral_high_intensity": 1,
    }


# --- statistics against an independent count ------------------------------------------------------


def _random_rows(rng, n_va, n_expr, n_au):
    """VA, EXPR and AU lines for one person: markers, out-of-range values, 0.05 grid (ties at 0.5)."""
    expr = [str(rng.integers(0, 7)) for _ in range(n_expr)]
    for k in range(n_expr):
        r = rng.random()
        expr[k] = "-1" if r < 0.25 else "7" if r < 0.28 else expr[k]
    va = []
    for k in range(n_va):
        r = rng.random()
        if r < 0.25 or (k < n_expr and expr[k] == str(FEAR)):  # Fear never meets VA: empty histogram
            va.append("-5,-5")
        elif r < 0.28:
            va.append("1.5,0.2" if r < 0.265 else "-5,-1.25")
        else:
            va.append(f"{rng.integers(-20, 21) / 20:.2f},{rng.integers(-20, 21) / 20:.2f}")
    au = []
    for _ in range(n_au):
        r = rng.random()
        entries = ["-1"] * 8 if r < 0.2 else [str(x) for x in rng.integers(0, 2, 8)]
        if 0.2 <= r < 0.23:
            entries[int(rng.integers(0, 8))] = "2"
        au.append(",".join(entries))
    return va, expr, au


def _write_random_root(root, rng):
    layout = {  # split folder names, person -> (VA lines, EXPR lines, AU lines); 0 = no file
        ("Training_Set", "Train_Set", "Training_Set"): {
            "a": (120, 150, 100),
            "b_left": (80, 80, 0),
            "b_right": (0, 60, 0),
            "c": (90, 0, 0),
        },
        ("Validation_Set",) * 3: {"d": (70, 70, 70), "a": (0, 0, 50)},
    }
    written = {}
    for folders, people in layout.items():
        split = "validation" if folders[0] == "Validation_Set" else "train"
        written[split] = {}
        for name, sizes in people.items():
            rows = _random_rows(rng, *sizes)
            for task, folder, lines in zip(("VA_Set", "EXPR_Set", "AU_Set"), folders, rows):
                if lines:
                    write_task(root / task / folder, task, name, lines)
            written[split][name] = rows
    return written


def _frames(va_lines, expr_lines, au_lines):
    """Plain parse of written lines, padded: (v, a, e, au) with None for unannotated."""
    for k in range(max(len(va_lines), len(expr_lines), len(au_lines))):
        v, a = (va_lines[k] if k < len(va_lines) else "-5,-5").split(",")
        e = int(expr_lines[k]) if k < len(expr_lines) else -1
        au = [int(x) for x in au_lines[k].split(",")] if k < len(au_lines) else [-1] * 8
        yield (None if v == "-5" else Fraction(v)), (None if a == "-5" else Fraction(a)), (None if e == -1 else e), au


def _broken_rules(v, a, e, au):
    return {
        "out_of_range": (v is not None and abs(v) > 1)
        or (a is not None and abs(a) > 1)
        or (e is not None and not 0 <= e <= 6)
        or any(x not in (-1, 0, 1) for x in au),
        "happy_negative_valence": e == HAPPY and v is not None and v < 0,
        "sad_positive_valence": e == SAD and v is not None and v > 0,
        "neutral_high_intensity": e == NEUTRAL and v is not None and a is not None and v * v + a * a > Fraction(1, 4),
    }


def _as_stored(x):
    return float(np.float32(float(x)))  # the tables hold float32 labels


def _independent_statistics(written):
    kept_frames = {split: [] for split in written}
    expected = {}
    for split, people in written.items():
        labelled = dict.fromkeys(("valence", "arousal", "expression", "au", "va_and_expression"), 0)
        rules = ("out_of_range", "happy_negative_valence", "sad_positive_valence", "neutral_high_intensity")
        removed = dict.fromkeys((*rules, "total"), 0)
        frames = 0
        for rows in people.values():
            for v, a, e, au in _frames(*rows):
                frames += 1
                labelled["valence"] += v is not None
                labelled["arousal"] += a is not None
                labelled["expression"] += e is not None
                labelled["au"] += -1 not in au
                labelled["va_and_expression"] += v is not None and a is not None and e is not None
                broken = _broken_rules(v, a, e, au)
                for rule, hit in broken.items():
                    removed[rule] += hit
                removed["total"] += any(broken.values())
                if not any(broken.values()):
                    kept_frames[split].append((v, a, e))
        expected[split] = {"annotations": len(people), "frames": frames, "labelled": labelled, "removed": removed}

    both = [(v, a, e) for v, a, e in kept_frames["train"] if None not in (v, a, e)]
    histograms = []
    for expression in range(7):
        points = [(_as_stored(v), _as_stored(a)) for v, a, e in both if e == expression]
        vs, as_ = zip(*points) if points else ((), ())
        histograms.append(np.histogram2d(vs, as_, bins=20, range=HIST_RANGE)[0])
    for split in written:
        pseudo = dict.fromkeys(("valence", "arousal", "expression"), 0)
        for v, a, e in kept_frames[split]:
            drawable = e is not None and histograms[e].sum() > 0
            pseudo["valence"] += drawable and v is None
            pseudo["arousal"] += drawable and a is None
            if e is None and v is not None and a is not None:
                cell = np.histogram2d([_as_stored(v)], [_as_stored(a)], bins=20, range=HIST_RANGE)[0]
                pseudo["expression"] += sum((h * cell).sum() for h in histograms) > 0
        expected[split]["pseudo"] = pseudo
    return expected, [int(h.sum()) for h in histograms]


def test_label_statistics_equal_an_independent_count(tmp_path):
    root = tmp_path / "annotations"
    written = _write_random_root(root, np.random.default_rng(7))
    with pytest.raises(LabelError, match="line"):  # out-of-range values are rejected unless kept on purpose
        label_statistics(root)

    got = label_statistics(root, pseudo=("expression", "valence", "arousal"), keep_out_of_range=True)

    expected, per_expression = _independent_statistics(written)
    assert got["splits"] == expected
    assert list(got["histograms"]["frames_per_expression"].values()) == per_expression
    assert per_expression[FEAR] == 0 and got["splits"]["train"]["pseudo"]["expression"] > 0
    assert all(count > 0 for count in got["splits"]["train"]["removed"].values())
    default = label_statistics(root, keep_out_of_range=True)
    assert default["pseudo_kinds"] == ["valence"]
    assert default["splits"]["train"]["pseudo"] == {"valence": expected["train"]["pseudo"]["valence"]}
    json.dumps(got)


def test_label_statistics_report_missing_videos(tmp_path):
    root = tmp_path / "annotations"
    write_task(root / "VA_Set/Training_Set", "VA_Set", "v1_left", [(0, 0)])
    write_task(root / "VA_Set/Training_Set", "VA_Set", "v2", [(0, 0)])
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos/v1.mp4").write_bytes(b"")
    got = label_statistics(root, tmp_path / "videos")
    assert got["videos"]["matched"] == 1
    assert got["videos"]["missing"] == [str(root / "VA_Set/Training_Set/v2.txt")]


def test_unknown_pseudo_kind_is_a_user_error(tmp_path):
    with pytest.raises(TsavError, match="unknown pseudo-label kind happiness"):
        label_statistics(tmp_path, pseudo=("valence", "happiness"))


# --- pseudo labels -------------------------------------------------------------------------------------


def _random_labels(rng, n=4000):
    va = rng.uniform(-1, 1, size=(n, 2))
    va[: n // 10] = np.round(va[: n // 10], 1)  # values on bin edges, including ±1
    expr = rng.integers(0, 7, size=n)
    expr[rng.random(n) < 0.2] = -1
    va[rng.random(n) < 0.2] = np.nan
    return va, expr


def test_histograms_equal_histogram2d_and_survive_json():
    va, expr = _random_labels(np.random.default_rng(1))
    histograms = VAHistograms.fit(va, expr)
    for e in range(7):
        rows = (expr == e) & ~np.isnan(va).any(axis=1)
        reference, _, _ = np.histogram2d(va[rows, 0], va[rows, 1], bins=20, range=HIST_RANGE)
        np.testing.assert_array_equal(histograms.counts[e], reference)
    restored = VAHistograms.from_dict(json.loads(json.dumps(histograms.to_dict())))
    np.testing.assert_array_equal(restored.counts, histograms.counts)
    with pytest.raises(CheckpointError):
        VAHistograms.from_dict(dict(histograms.to_dict(), bins=10))
    with pytest.raises(CheckpointError):
        VAHistograms.from_dict({"counts": [[1]]})


def test_soft_expression_equals_the_formula():
    rng = np.random.default_rng(2)
    va, expr = _random_labels(rng, n=300)  # sparse enough to leave empty bins
    histograms = VAHistograms.fit(va, expr)
    queries = np.concatenate([rng.uniform(-1, 1, (500, 2)), [[1.0, 1.0], [-1.0, -1.0], [0.3, -0.7], [NAN, 0.2]]])
    soft = histograms.soft_expression(queries)
    both = (expr >= 0) & ~np.isnan(va).any(axis=1)
    per_expression = [
        np.histogram2d(va[both & (expr == e), 0], va[both & (expr == e), 1], bins=20, range=HIST_RANGE)[0]
        for e in range(7)
    ]
    empty = 0
    for query, p in zip(queries, soft):
        if np.isnan(query).any():
            assert np.isnan(p).all()
            continue
        cell = np.histogram2d([query[0]], [query[1]], bins=20, range=HIST_RANGE)[0]
        n = np.array([(h * cell).sum() for h in per_expression])
        if n.sum() == 0:
            empty += 1
            assert np.isnan(p).all()
        else:
            np.testing.assert_allclose(p, n / n.sum(), rtol=1e-12)
    assert 0 < empty < len(queries) - 1


def test_sampler_draws_land_in_the_expressions_bins_with_their_frequencies():
    centres = {HAPPY: [(0.55, 0.35, 10), (0.95, 0.95, 30), (0.15, -0.45, 60)], SAD: [(-0.55, -0.25, 5)]}
    va = np.array([(v, a) for e in centres for v, a, n in centres[e] for _ in range(n)])
    expr = np.array([e for e in centres for _, _, n in centres[e] for _ in range(n)])
    histograms = VAHistograms.fit(va, expr)
    n_draws = 20000
    queried = np.array([HAPPY] * n_draws + [SAD] * 100 + [FEAR, -1])  # Fear: empty histogram

    drawn = histograms.sample(queried, np.random.default_rng(3))

    assert np.isnan(drawn[-2:]).all() and not np.isnan(drawn[:-2]).any()
    for e, draws in ((HAPPY, drawn[:n_draws]), (SAD, drawn[n_draws:-2])):
        frequency = np.histogram2d(draws[:, 0], draws[:, 1], bins=20, range=HIST_RANGE)[0] / len(draws)
        expected = histograms.counts[e] / histograms.counts[e].sum()
        assert (frequency[expected == 0] == 0).all()
        np.testing.assert_allclose(frequency, expected, atol=0.015)
    # uniform inside the bin: the position within the 0.1-wide bin is U(0, 1)
    within = (drawn[:n_draws] + 1.0) / 0.1 % 1.0
    assert stats.kstest(within.ravel(), "uniform").pvalue > 1e-3
    again = histograms.sample(queried, np.random.default_rng(3))
    np.testing.assert_array_equal(again, drawn)
    fresh = histograms.sample(queried, np.random.default_rng(4))
    assert not np.allclose(fresh[:n_draws], drawn[:n_draws])


def test_pseudo_targets_fill_only_the_requested_kinds():
    histograms = VAHistograms.fit(
        np.array([[0.55, 0.35], [0.55, 0.35], [0.15, 0.15]]), np.array([HAPPY, HAPPY, NEUTRAL])
    )
    va = np.array([[0.5, 0.5], [NAN, NAN], [NAN, NAN], [0.57, 0.31], [-0.9, -0.9], [NAN, NAN]], dtype=np.float32)
    expr = np.array([HAPPY, HAPPY, FEAR, -1, -1, -1])

    va_target, expr_target = pseudo_targets(va, expr, histograms, np.random.default_rng(0))

    assert 0.5 <= va_target[1, 0] < 0.6 and np.isnan(va_target[1, 1])  # Happiness's only bin
    np.testing.assert_array_equal(np.delete(va_target, 1, axis=0), np.delete(va, 1, axis=0))
    np.testing.assert_array_equal(expr_target[:3], np.eye(7)[[HAPPY, HAPPY, FEAR]])
    assert np.isnan(expr_target[3:]).all()

    all_kinds = ("valence", "arousal", "expression")
    va_target, expr_target = pseudo_targets(va, expr, histograms, np.random.default_rng(0), kinds=all_kinds)
    assert 0.5 <= va_target[1, 0] < 0.6 and 0.3 <= va_target[1, 1] < 0.4
    assert np.isnan(va_target[2]).all()  # Fear has no histogram
    np.testing.assert_allclose(expr_target[3], np.eye(7)[HAPPY])  # bin of (0.57, 0.31): two Happiness frames
    assert np.isnan(expr_target[4:]).all()  # empty bin, no VA
