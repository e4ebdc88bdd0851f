"""A timeline figure per video: valence/arousal, expression probabilities and action units over time."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np

from tsav_deploy.atomic import atomic_path
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.errors import shown
from tsav_deploy.outputs.palette import AROUSAL_COLOUR, AU_COLOURMAP, EXPRESSION_COLOURS, VALENCE_COLOUR
from tsav_deploy.results.video_result import VideoResult


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
    ax_va.plot(t, p.valence, label="valence", color=VALENCE_COLOUR, lw=1.2)
    ax_va.plot(t, p.arousal, label="arousal", color=AROUSAL_COLOUR, lw=1.2)
    ax_va.axhline(0, color="0.6", lw=0.5)
    ax_va.set_ylim(-1.05, 1.05)
    ax_va.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    # Shade stretches without a face: predictions there rest on audio and earlier frames only.
    ax_va.fill_between(t, -1.05, 1.05, where=~person.face_found, color="0.9", step="mid", lw=0)

    ax_ex.stackplot(t, p.expression_probs.T, colors=EXPRESSION_COLOURS, labels=EXPRESSIONS)
    ax_ex.set_ylim(0, 1)
    ax_ex.set_ylabel("expression")
    ax_ex.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)

    edges = np.concatenate([t[:1], (t[1:] + t[:-1]) / 2, t[-1:]]) if len(t) > 1 else np.array([0.0, 1.0])
    mesh = ax_au.pcolormesh(
        edges, np.arange(len(ACTION_UNITS) + 1), p.au_probs.T, vmin=0, vmax=1, cmap=AU_COLOURMAP, shading="flat"
    )
    ax_au.set_yticks(np.arange(len(ACTION_UNITS)) + 0.5, ACTION_UNITS, fontsize=7)
    ax_au.set_xlabel("time (s)")
    for ax in (ax_va, ax_ex):
        ax.tick_params(labelbottom=False)
    bar = fig.add_subplot(grid[2, 1])
    fig.colorbar(mesh, cax=bar, label="P(AU)")
    bar.set_box_aspect(12)  # a slim bar at the panel's height, whatever the column's width
    fig.subplots_adjust(left=0.07, right=0.93, top=0.95, bottom=0.08, hspace=0.12)
    return fig


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
