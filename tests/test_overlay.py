"""The overlay's panel stays legible from 240p to 4K: measured on the drawn pixels, every text row
is inside the frame and its letters are at least 9 pixels tall and grow with the frame. Its sound
is the input's, at its time."""

from __future__ import annotations

import pathlib

import av
import numpy as np
import pytest

from tsav_deploy.contract import ACTION_UNITS
from tsav_deploy.outputs.overlay import draw_panel, write_overlay

from helpers.sound import check_in_step, sound_from_first_frame
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


def _panel_pixels(image: np.ndarray) -> np.ndarray:
    """Where the panel darkened a mid-grey picture (to 40 %) or drew on it."""
    return (image != 128).any(axis=2)


def _face_at(result, box: tuple[float, float, float, float], frames: slice = slice(None)) -> None:
    for person in result.persons:
        person.boxes[frames] = box
        person.face_found[frames] = True


@pytest.mark.parametrize("where", ["top left", "top right", "bottom left", "bottom right"])
def test_the_panel_leaves_the_face_it_annotates_uncovered(where):
    """A face in any corner of a 640x360 picture: the panel goes where no face is, for the whole
    video, and no pixel inside the face's box is drawn on except the box's own outline."""
    from tsav_deploy.outputs.overlay import best_corner

    width, height = 640, 360
    x = 20 if where.endswith("left") else width - 200
    y = 20 if where.startswith("top") else height - 200
    result = synthetic_result("x", np.arange(30) / 30)
    _face_at(result, (x, y, x + 180, y + 180))
    corner = best_corner(result, width, height)
    assert corner != where
    image = np.full((height, width, 3), 128, np.uint8)
    draw_panel(image, result, 5, corner)
    inside = _panel_pixels(image)[y + 3 : y + 178, x + 3 : x + 178]
    assert not inside.any()


def test_without_faces_the_panel_stays_top_left():
    from tsav_deploy.outputs.overlay import best_corner

    result = synthetic_result("x", np.arange(30) / 30, gaps={0: [(0, 30)]})
    assert best_corner(result, 640, 360) == "top left"


def test_a_live_overlay_moves_its_panel_once_a_face_settles_under_it(tmp_path):
    """Frames written to a live overlay file, decoded back: a face that stays in the top left moves
    the panel away within a quarter of a second; a face crossing the new corner for a few frames
    does not move it (no jumping around); one that stays there does."""
    import av

    from tsav_deploy.outputs.overlay import LIVE_SETTLE_FRAMES, OverlayStream

    width, height = 1280, 720
    top_left, top_right = (20, 20, 200, 200), (width - 200, 20, width - 20, 200)
    faces = [top_left] * 30 + [top_right] * (LIVE_SETTLE_FRAMES - 3) + [top_left] * 10 + [top_right] * 20
    path = tmp_path / "live.mp4"
    with OverlayStream(str(path)) as overlay:
        for i, box in enumerate(faces):
            frame = synthetic_result("x", np.array([i / 30]))
            _face_at(frame, box)
            overlay.write(np.full((height, width, 3), 128, np.uint8), i / 30, frame)
    with av.open(str(path)) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(pictures) == len(faces)

    def panel_at(picture: np.ndarray) -> str:
        corners = {"top left": picture[5:40, 5:40], "top right": picture[5:40, -40:-5]}
        corners |= {"bottom left": picture[-40:-5, 5:40], "bottom right": picture[-40:-5, -40:-5]}
        return max(corners, key=lambda c: float((corners[c] < 90).all(axis=2).mean()))

    where = [panel_at(p) for p in pictures]
    assert where[0] == "top left" and where[LIVE_SETTLE_FRAMES] == "top right"  # moved off the face
    crossing = slice(30, 30 + LIVE_SETTLE_FRAMES - 3)
    assert set(where[crossing]) == {"top right"}  # a face passing by: it stays
    assert where[-1] not in ("top right", "top left")  # a face that stays: it moves again
    moves = sum(a != b for a, b in zip(where, where[1:]))
    assert moves == 2, " ".join(w.replace(" ", "-") for w in where)


def _with_pcm_audio(video: pathlib.Path, target: pathlib.Path) -> None:
    """``video``'s pictures (packets copied) with its sound as 16-bit PCM in a .mov: a codec MP4
    does not take, so the overlay re-encodes it."""
    with av.open(str(video)) as source, av.open(str(target), "w") as out:
        pictures = out.add_stream_from_template(source.streams.video[0])
        sound = out.add_stream("pcm_s16le", rate=44_100, layout="mono")
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = pictures
                out.mux(packet)
        with av.open(str(video)) as again:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=44_100)
            for frame in again.decode(audio=0):
                for piece in resampler.resample(frame):
                    piece.pts = None  # end to end from the track's start, as the source's
                    out.mux(sound.encode(piece))
        out.mux(sound.encode(None))


@pytest.mark.parametrize("codec", ["aac", "pcm"])
def test_annotate_overlay_sound_is_in_step(media_dir, tmp_path, codec):
    """`tsav annotate --overlay`'s video carries the input's sound at its time, copied (AAC) or
    re-encoded (PCM): decoded on its own, it is the input's, best correlated at a lag under 1 ms, for
    a clip whose first picture comes 33 ms after its first sound."""
    video = media_dir / "talking_head_vfr.mp4"
    if codec == "pcm":
        video = tmp_path / "talking_head_pcm.mov"
        _with_pcm_audio(media_dir / "talking_head_vfr.mp4", video)
    with av.open(str(video)) as container:
        times = np.array([frame.time for frame in container.decode(video=0)])
    overlay = write_overlay(tmp_path / "overlay.mp4", video, synthetic_result("clip", times - times[0]))
    # Within 1 ms: copied packets keep their own timing, which lands 19 samples (0.4 ms) early in the MP4.
    check_in_step(sound_from_first_frame(video), sound_from_first_frame(overlay), 1 / 22.13, lag_s=0.001)


def _white_mask(image: np.ndarray) -> np.ndarray:
    return image.min(axis=2) > 200


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


@pytest.mark.parametrize("no_face", ["keep", "nan"])
def test_a_faceless_frame_gets_a_dimmed_panel_labelled_audio_only(no_face):
    """Frame 0 has a face, frame 1 none: the second panel is darker, says "audio only" in white
    above its rows (the words as OpenCV draws them at the panel's size), and shows its values
    dimmed (keep) or none (nan)."""
    import cv2

    result = synthetic_result("x", np.arange(2) / 30, ("",), gaps={0: [(1, 2)]})
    result.no_face = no_face
    seen, unseen = (np.full((360, 640, 3), 128, np.uint8) for _ in range(2))
    draw_panel(seen, result, 0)
    draw_panel(unseen, result, 1)
    y0, y1, x0, x1 = _bbox(_panel_pixels(seen) & ~_face_box(result, seen.shape))
    panel = (slice(y0, y1), slice(x0, x1))
    assert unseen[panel].mean() < 0.6 * seen[panel].mean()
    # White text: the face's panel has its 8 rows of labels; the faceless one only the label, above them.
    rows_seen, rows_unseen = text_rows(seen), text_rows(unseen)
    assert len(rows_seen) == len(ACTION_UNITS) and len(rows_unseen) == 1 and rows_unseen[0][0] < rows_seen[0][0]
    label_top, label_height = rows_unseen[0]
    drawn = _white_mask(unseen)[label_top : label_top + label_height]
    # The same words rendered here at the documented size: capitals 1/40 of the short side, at
    # least 10 px; OpenCV's simplex capitals are 20 px at scale 1.
    scale = max(10, 360 / 40) / 20
    canvas = np.zeros((100, 600, 3), np.uint8)
    cv2.putText(canvas, "audio only", (10, 50), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    top, bottom, left, right = _bbox(_white_mask(canvas))
    dt, db, dl, dr = _bbox(drawn)
    assert (db - dt, dr - dl) == (bottom - top, right - left)  # "audio only", as wide and tall as the label drawn
    reference = _white_mask(canvas)[top:bottom, left:right]
    assert (drawn[dt:db, dl:dr] == reference).mean() > 0.9  # and the same letters

    # Colour: the box colour (green) at full strength with a face; dimmed, or absent under nan.
    def greenest(image):
        region = image[panel].astype(int)
        return (region[..., 1] - np.maximum(region[..., 0], region[..., 2])).max()

    assert greenest(seen) > 150
    assert greenest(unseen) < (110 if no_face == "keep" else 5)
    if no_face == "keep":
        assert greenest(unseen) > 40  # the values are there, dimmed


def _face_box(result, shape) -> np.ndarray:
    """Where frame 0's face box is drawn (outside the panel's measure)."""
    mask = np.zeros(shape[:2], bool)
    x1, y1, x2, y2 = (int(round(v)) for v in result.persons[0].boxes[0])
    mask[max(0, y1 - 3) : y2 + 4, max(0, x1 - 3) : x2 + 4] = True
    return mask
