"""The timeline PNG's stretches without a face: read from matplotlib's artists, not the pixels. The
curves there are thin, dashed and faded and lie only over those stretches (keep), or are not drawn
(nan); a grey band with a legend entry and a label says "audio only"; the expression and AU panels
are washed out there (keep) or blanked (nan)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D

from tsav_deploy.outputs.plot import timeline_figure

from helpers.synthetic_annotation import synthetic_result

GAP = (40, 80)  # frames without a face, of 120 at 30 fps


def _figure(no_face: str):
    import matplotlib.pyplot as plt

    result = synthetic_result("clip", np.arange(120) / 30, ("",), gaps={0: [GAP]})
    result.no_face = no_face
    fig = timeline_figure(result)
    return fig, result.times, plt


def _finite_times(line: Line2D) -> np.ndarray:
    x, y = (np.asarray(v, dtype=float) for v in line.get_data())
    return x[np.isfinite(y)]


@pytest.mark.parametrize("no_face", ["keep", "nan"])
def test_the_faceless_stretch_is_drawn_faded_and_labelled_audio_only(no_face):
    fig, t, plt = _figure(no_face)
    try:
        ax_va, ax_ex, ax_au = fig.axes[:3]
        seen_t = np.concatenate([t[: GAP[0]], t[GAP[1] :]])
        lines = [line for line in ax_va.get_lines() if line.get_label() in ("valence", "arousal")]
        assert len(lines) == 2
        for line in lines:  # full strength only where the face was seen
            assert np.array_equal(_finite_times(line), seen_t)
            assert line.get_alpha() in (None, 1) and line.get_linestyle() == "-"
        faded = [line for line in ax_va.get_lines() if line.get_gid() == "audio-only"]
        if no_face == "nan":
            assert faded == []
        else:
            assert len(faded) == 2
            for line in faded:  # over the stretch (and the frame either side, to meet the line)
                assert np.array_equal(_finite_times(line), t[GAP[0] - 1 : GAP[1] + 1])
                assert line.get_alpha() < 0.5 and line.get_linestyle() == "--" and line.get_linewidth() < 1.2
        legend = [text.get_text() for text in ax_va.get_legend().get_texts()]
        assert legend == ["valence", "arousal", "audio only"]
        assert any(text.get_text().strip() == "audio only" for text in ax_va.texts)
        for ax in (ax_ex, ax_au):
            washes = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_gid() == "audio-only"]
            assert len(washes) == 1
            (x0, _), (x1, _) = washes[0].get_paths()[0].get_extents().get_points()
            assert x0 <= t[GAP[0]] and t[GAP[1] - 1] <= x1 < t[GAP[1]]  # the stretch, to the mid-points
            alpha = washes[0].get_alpha()
            assert alpha == (1.0 if no_face == "nan" else pytest.approx(0.65))
    finally:
        plt.close(fig)


@pytest.mark.parametrize("found", [True, False])
def test_a_video_of_one_frame_is_plotted(found, tmp_path):
    """A photo renamed to .mp4 decodes to one frame: its timeline is a PNG with that frame's values."""
    from tsav_deploy.outputs.plot import write_plot

    result = synthetic_result("one", np.array([0.0]), ("",), gaps={0: [] if found else [(0, 1)]})
    path = write_plot(tmp_path / "one.png", result)
    assert path.read_bytes()[:4] == b"\x89PNG"
    fig = timeline_figure(result)
    try:
        (valence,) = [line for line in fig.axes[0].get_lines() if line.get_label() == "valence"]
        y = np.asarray(valence.get_ydata(), dtype=float)
        expected = result.persons[0].predictions.valence if found else [np.nan]
        np.testing.assert_array_equal(y, expected)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
