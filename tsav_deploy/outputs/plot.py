"""A timeline figure per video: valence/arousal, expression probabilities and action units over time."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np

from tsav_deploy.atomic import atomic_path
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.errors import shown
from tsav_deploy.outputs.palette import AROUSAL_COLOUR, AU_COLOURMAP, EXPRESSION_COLOURS, VALENCE_COLOUR
from tsav_deploy.results.table import AUDIO_ONLY
from tsav_deploy.results.video_result import VideoResult

AUDIO_ONLY_LABEL = AUDIO_ONLY  # the table's modality of a row without a face
AUDIO_ONLY_GID = "audio-only"  # the artists of the faceless stretches
AUDIO_ONLY_ALPHA = 0.35  # what is left of a faceless stretch's strength
AUDIO_ONLY_LINE = {"lw": 0.9, "ls": (0, (3, 2)), "alpha": AUDIO_ONLY_ALPHA}


def timeline_figure(result: VideoResult, person_index: int = 0):
    """The figure: valence/arousal, expression probabilities and action units over one time axis.

    The panels sit in the left column of a two-column grid whose right column holds the legend and
    the colour bar, so every panel has the same width and a time falls on the same pixel column in
    all three (a colour bar taken from one panel's own width would shift its axis)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    person = result.persons[person_index]
    p, t = person.predictions, result.times
    fig = plt.figure(figsize=(11, 7))
    grid = fig.add_gridspec(3, 2, height_ratios=[2, 1.4, 1.6], width_ratios=[1, 0.13], wspace=0.02)
    ax_va = fig.add_subplot(grid[0, 0])
    ax_ex = fig.add_subplot(grid[1, 0], sharex=ax_va)
    ax_au = fig.add_subplot(grid[2, 0], sharex=ax_va)
    title = shown(f"{result.name}{person.suffix}: {result.frames} frames, face in {int(person.face_found.sum())}")
    ax_va.set_title(title, fontsize=10, loc="left")
    found, keep = person.face_found, result.no_face == "keep"
    # Stretches without a face: a grey band labelled "audio only" (the predictions there rest on the
    # audio and a black clip), the curves in it thin, dashed and faded (none under no_face "nan").
    ax_va.fill_between(t, -1.05, 1.05, where=~found, color="0.9", step="mid", lw=0, label=AUDIO_ONLY_LABEL)
    for values, name, colour in ((p.valence, "valence", VALENCE_COLOUR), (p.arousal, "arousal", AROUSAL_COLOUR)):
        ax_va.plot(t, np.where(found, values, np.nan), label=name, color=colour, lw=1.2)
        if keep:
            near = _with_neighbours(~found)  # so that the dashes meet the line
            line = ax_va.plot(t, np.where(near, values, np.nan), color=colour, **AUDIO_ONLY_LINE)[0]
            line.set_gid(AUDIO_ONLY_GID)
    ax_va.axhline(0, color="0.6", lw=0.5)
    ax_va.set_ylim(-1.05, 1.05)
    handles, labels = ax_va.get_legend_handles_labels()
    order = [labels.index(name) for name in ("valence", "arousal", AUDIO_ONLY_LABEL)]
    ax_va.legend(
        [handles[k] for k in order],
        [labels[k] for k in order],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
    )
    for start, end in _stretches(t, ~found):
        if end - start > 0.06 * (t[-1] - t[0]):  # labelled where the label fits
            ax_va.text(start, 1.0, f" {AUDIO_ONLY_LABEL}", fontsize=8, color="0.35", va="top")

    ax_ex.stackplot(t, p.expression_probs.T, colors=EXPRESSION_COLOURS, labels=EXPRESSIONS)
    ax_ex.set_ylim(0, 1)
    ax_ex.set_ylabel("expression")
    ax_ex.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)

    edges = np.concatenate([t[:1], (t[1:] + t[:-1]) / 2, t[-1:]]) if len(t) > 1 else np.array([0.0, 1.0])
    mesh = ax_au.pcolormesh(
        edges, np.arange(len(ACTION_UNITS) + 1), p.au_probs.T, vmin=0, vmax=1, cmap=AU_COLOURMAP, shading="flat"
    )
    ax_au.set_yticks(np.arange(len(ACTION_UNITS)) + 0.5, ACTION_UNITS, fontsize=7)
    for ax in (ax_ex, ax_au):  # faded where only the audio was seen, blank under no_face "nan"
        band = ax.fill_between(
            t,
            0,
            1,
            where=~found,
            transform=ax.get_xaxis_transform(),
            color="white",
            step="mid",
            lw=0,
            alpha=1 - AUDIO_ONLY_ALPHA if keep else 1.0,
        )
        band.set_gid(AUDIO_ONLY_GID)
    ax_au.set_xlabel("time (s)")
    for ax in (ax_va, ax_ex):
        ax.tick_params(labelbottom=False)
    bar = fig.add_subplot(grid[2, 1])
    fig.colorbar(mesh, cax=bar, label="P(AU)")
    bar.set_box_aspect(12)  # a slim bar at the panel's height, whatever the column's width
    fig.subplots_adjust(left=0.07, right=0.93, top=0.95, bottom=0.08, hspace=0.12)
    return fig


def _with_neighbours(mask: np.ndarray) -> np.ndarray:
    """``mask`` widened by one frame on each side, at the same length (also for one frame)."""
    wide = mask.copy()
    wide[1:] |= mask[:-1]
    wide[:-1] |= mask[1:]
    return wide


def _stretches(t: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) times of each run of ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return [(t[a], t[b - 1]) for a, b in zip(edges[::2], edges[1::2])]


def write_plot(path: pathlib.Path, result: VideoResult, person_index: int = 0) -> pathlib.Path:
    import matplotlib.pyplot as plt

    fig = timeline_figure(result, person_index)
    try:
        with warnings.catch_warnings():
            # A title in a script the font lacks (CJK file names) draws boxes; no console noise.
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)  # also on a failed write: a long batch must not collect figures
    return path
