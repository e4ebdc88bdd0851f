"""The overlay's panel stays legible from 240p to 4K: measured on the drawn pixels, every text row
is inside the frame and its letters are at least 9 pixels tall and grow with the frame."""

from __future__ import annotations

import numpy as np
import pytest

from tsav_deploy.contract import ACTION_UNITS
from tsav_deploy.outputs.overlay import draw_panel

from helpers.synthetic_annotation import synthetic_result

SIZES = [(320, 240), (640, 360), (1280, 720), (1920, 1080), (3840, 2160), (1080, 1920)]


def text_rows(image: np.ndarray) -> list[tuple[int, int]]:
    """(top, height) of each horizontal band holding white (label) pixels; a descender that
    antialiasing leaves one blank row below its letters belongs to them."""
    white = (image.min(axis=2) > 200).any(axis=1)
    bands, top = [], None
    for y, on in enumerate(np.append(white, False)):
        if on and top is None:
            top = y
        elif not on and top is not None:
            if bands and top - sum(bands[-1]) <= 1:
                top = bands.pop()[0]
            bands.append((top, y - top))
            top = None
    return bands


@pytest.mark.parametrize("width,height", SIZES)
def test_panel_text_is_legible_at_every_size(width, height):
    result = synthetic_result("x", np.arange(3) / 30, ("_left", "_right"))
    image = np.full((height, width, 3), 128, np.uint8)
    draw_panel(image, result, 1)
    rows = text_rows(image)
    # One band per row of labels: the expressions and the AUs side by side.
    assert len(rows) == len(ACTION_UNITS)
    assert rows[-1][0] + rows[-1][1] < height
    capitals = min(h for _, h in rows)  # rows without descenders: the capitals' height
    assert capitals >= 9
    assert capitals >= 0.8 * min(width, height) / 40
    # The panel leaves most of the picture free.
    dark = (image == np.uint8(128 * 0.4)).all(axis=2)
    assert dark.any() and dark.sum() < 0.5 * width * height
