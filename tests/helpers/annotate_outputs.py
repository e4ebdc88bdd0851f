"""Running the CLI in-process and checking what `tsav annotate` writes for one video."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from tsav_deploy.cli import app
from tsav_deploy.contract import ACTION_UNITS, EXPRESSIONS


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def check_outputs(out, name: str, n_frames: int) -> None:
    va = (out / "VA_Set" / f"{name}.txt").read_text().splitlines()
    expr = (out / "EXPR_Set" / f"{name}.txt").read_text().splitlines()
    au = (out / "AU_Set" / f"{name}.txt").read_text().splitlines()
    assert va[0] == "valence,arousal" and expr[0] == ",".join(EXPRESSIONS) and au[0] == ",".join(ACTION_UNITS)
    assert len(va) == len(expr) == len(au) == n_frames + 1
    values = np.array([[float(x) for x in line.split(",")] for line in va[1:]])
    assert values.shape == (n_frames, 2) and np.all(np.abs(values) <= 1.0)
    assert all(line == f"{float(line.split(',')[0]):.3f},{float(line.split(',')[1]):.3f}" for line in va[1:])
    assert {int(x) for x in expr[1:]} <= set(range(7))
    assert all(len(line.split(",")) == 8 and set(line.split(",")) <= {"0", "1"} for line in au[1:])
    table = (out / f"{name}.csv").read_text().splitlines()
    assert len(table) == n_frames + 1 and table[0].startswith("frame,time,person,face_found")
    assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
