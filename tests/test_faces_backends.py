"""Face backends on the shared photos, and ``--faces auto|insightface|dlib`` selection.

insightface's pack cannot be downloaded here, so its tests cover selection and its failure modes;
the cache root always points into tmp_path so no test ever starts a download.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tsav_deploy.errors import TsavError
from tsav_deploy.faces import Face, FaceBackendError, get_backend, insightface_pack, resolve_backend_name
from tsav_deploy.faces.dlib_backend import DlibBackend


def _rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def dlib_backend() -> DlibBackend:
    return DlibBackend()


@pytest.fixture(scope="module")
def single_face(media_dir):
    return _rgb(media_dir / "single_face.jpg")


@pytest.fixture(scope="module")
def face_ref(reference):
    return reference.load_npz("face_ref.npz")


def test_dlib_single_face_matches_reference_landmarks(dlib_backend, single_face, face_ref):
    faces = dlib_backend.detect(single_face)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face) and face.embedding is None and face.tracklet is None
    assert face.box.shape == (4,) and face.landmarks68.shape == (68, 2) and face.landmarks68.dtype == np.float32
    error = np.abs(face.landmarks68 - face_ref["image_landmarks68"])
    # The reference ran dlib's detector with another upsampling, so the box (and fit) differs slightly.
    assert error.mean() < 1.0 and error.max() <= 3.0
    x0, _, x1, y1 = face.box
    inside = (face.landmarks68[:, 0] > x0) & (face.landmarks68[:, 0] < x1) & (face.landmarks68[:, 1] < y1)
    assert inside.mean() > 0.9


def test_dlib_refit_follows_a_still_face(dlib_backend, single_face):
    face = dlib_backend.detect(single_face)[0]
    followed = dlib_backend.refit(single_face, face)
    assert followed is not None and followed.score == face.score
    assert np.abs(followed.landmarks68 - face.landmarks68).max() <= 2.0


def test_dlib_refit_gives_up_on_a_face_outside_the_image(dlib_backend, single_face):
    face = dlib_backend.detect(single_face)[0]
    gone = Face(box=face.box, score=face.score, landmarks68=face.landmarks68 - [2000, 0])
    assert dlib_backend.refit(single_face, gone) is None


def test_dlib_embedding_identifies_the_same_face(dlib_backend, single_face, media_dir):
    face = dlib_backend.detect(single_face)[0]
    embedding = dlib_backend.embed(single_face, face)
    assert embedding.shape == (128,) and np.isfinite(embedding).all()
    # The same person slightly smaller and shifted is well within dlib's same-person distance.
    moved = cv2.resize(single_face, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)[10:, 15:]
    again = dlib_backend.detect(moved)[0]
    assert np.linalg.norm(dlib_backend.embed(moved, again) - embedding) < 0.5 * dlib_backend.identity_threshold
    group = _rgb(media_dir / "group_5_faces.jpg")
    others = [dlib_backend.embed(group, f) for f in dlib_backend.detect(group)]
    assert min(np.linalg.norm(e - embedding) for e in others) > dlib_backend.identity_threshold


def test_dlib_group_photo_finds_all_five_faces(media_dir):
    """HOG alone misses the young man with sunglasses; the thorough (CNN) pass at full resolution finds
    him too, without duplicating the others."""
    group = _rgb(media_dir / "group_5_faces.jpg")
    backend = DlibBackend(detector="hog+cnn", detect_size=None)
    faces = backend.detect(group, thorough=True)
    assert len(faces) == 5
    centres = np.array([(f.box[:2] + f.box[2:]) / 2 for f in faces])
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.eye(5) * 1e9
    assert distances.min() > 50


def test_no_face_in_a_blank_image(dlib_backend):
    assert dlib_backend.detect(np.full((360, 640, 3), 127, np.uint8), thorough=True) == []


def test_bad_options_are_one_line_errors():
    with pytest.raises(FaceBackendError, match="unknown face backend"):
        get_backend("opencv")
    with pytest.raises(FaceBackendError, match="unknown dlib detector"):
        get_backend("dlib", detector="haar")


# --- selection and the insightface pack ---------------------------------------------------------------


def _placeholder_pack(root) -> None:
    """Files where the pack's models belong, but not models (what an interrupted copy leaves)."""
    folder = insightface_pack.pack_dir(root)
    folder.mkdir(parents=True)
    for name in ("det_10g.onnx", "1k3d68.onnx", "w600k_r50.onnx"):
        (folder / name).write_bytes(b"not an onnx model")


def test_auto_takes_dlib_without_a_local_pack(tmp_path):
    assert not insightface_pack.is_available(tmp_path)
    assert resolve_backend_name("auto", root=tmp_path) == "dlib"
    backend = get_backend("auto", root=tmp_path)
    assert backend.name == "dlib"
    assert not any(tmp_path.iterdir())  # nothing was downloaded or created


def test_auto_takes_insightface_when_its_pack_is_present(tmp_path):
    _placeholder_pack(tmp_path)
    assert insightface_pack.is_available(tmp_path)
    assert resolve_backend_name("auto", root=tmp_path) == "insightface"
    assert resolve_backend_name("dlib", root=tmp_path) == "dlib"


def test_a_partial_pack_is_not_available(tmp_path):
    _placeholder_pack(tmp_path)
    (insightface_pack.pack_dir(tmp_path) / "w600k_r50.onnx").unlink()
    assert resolve_backend_name("auto", root=tmp_path) == "dlib"


def test_insightface_home_is_the_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    assert insightface_pack.pack_dir() == tmp_path / "models" / "buffalo_l"
    assert not insightface_pack.is_available()
    _placeholder_pack(tmp_path)
    assert insightface_pack.is_available()


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, TsavError) and "\n" not in message
    return message


def test_explicit_insightface_without_pack_is_a_clear_error(tmp_path):
    with pytest.raises(FaceBackendError) as error:
        get_backend("insightface", root=tmp_path, download=False)
    message = _one_line(error)
    assert str(insightface_pack.pack_dir(tmp_path)) in message and "--faces dlib" in message


def test_a_pack_failing_its_published_hashes_is_removed_with_one_line(tmp_path):
    """The placeholders cannot match upstream's published SHA-256s: refused before onnxruntime sees
    them, removed, so the next ``auto`` run takes dlib and ``--faces insightface`` fetches the pack."""
    _placeholder_pack(tmp_path)
    with pytest.raises(FaceBackendError) as error:
        get_backend("auto", root=tmp_path)
    message = _one_line(error)
    assert "det_10g.onnx did not match its published SHA-256 (removed)" in message and "--faces dlib" in message
    assert not (insightface_pack.pack_dir(tmp_path) / "det_10g.onnx").exists()
    assert resolve_backend_name("auto", root=tmp_path) == "dlib"
