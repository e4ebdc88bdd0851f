"""A timeline figure per video: valence/arousal, expression probabilities and action units over time."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np

from tsav_deploy.atomic import atomic_path
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS
from tsav_deploy.errors import shown
from tsav_deploy.results.video import VideoResult

EXPRESSION_COLOURS = ("#9e9e9e", "#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e")


def write_plot(path: pathlib.Path, result: VideoResult, person_index: int = 0) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    person = result.persons[person_index]
    p, t = person.predictions, result.times
    fig, (ax_va, ax_ex, ax_au) = plt.subplots(
        3, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1.4, 1.6]}
    )
    title = shown(f"{result.name}{person.suffix}: {result.frames} frames, face in {int(person.face_found.sum())}")
    ax_va.set_title(title, fontsize=10, loc="left")
    ax_va.plot(t, p.valence, label="valence", color="#1f77b4", lw=1.2)
    ax_va.plot(t, p.arousal, label="arousal", color="#d62728", lw=1.2)
    ax_va.axhline(0, color="k", lw=0.5)
    ax_va.set_ylim(-1.05, 1.05)
    ax_va.legend(loc="upper right", fontsize=8, ncol=2)
    # Shade stretches without a face: predictions there rest on audio and earlier frames only.
    ax_va.fill_between(t, -1.05, 1.05, where=~person.face_found, color="0.9", step="mid", lw=0)

    ax_ex.stackplot(t, p.expression_probs.T, colors=EXPRESSION_COLOURS, labels=EXPRESSIONS)
    ax_ex.set_ylim(0, 1)
    ax_ex.set_ylabel("expression")
    ax_ex.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)

    edges = np.concatenate([t[:1], (t[1:] + t[:-1]) / 2, t[-1:]]) if len(t) > 1 else np.array([0.0, 1.0])
    mesh = ax_au.pcolormesh(
        edges, np.arange(len(ACTION_UNITS) + 1), p.au_probs.T, vmin=0, vmax=1, cmap="viridis", shading="flat"
    )
    ax_au.set_yticks(np.arange(len(ACTION_UNITS)) + 0.5, ACTION_UNITS, fontsize=7)
    ax_au.set_xlabel("time (s)")
    fig.colorbar(mesh, ax=ax_au, pad=0.01, fraction=0.03, label="P(AU)")
    try:
        with warnings.catch_warnings():
            # A title in a script the font lacks (CJK file names) draws boxes; no console noise.
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            fig.tight_layout()
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)  # also on a failed write: a long batch must not collect figures
    return path
