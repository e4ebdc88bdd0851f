"""People across a whole video: tracklets joined by identity, the main person, ``--person main|all``.

Works offline on a video's per-frame faces (small data: boxes, landmarks, a few embeddings; no images),
which the annotate pipeline collects in its first pass. Tracklets come from the video tracker
(:mod:`.video`); faces without one (e.g. from per-frame ``detect`` calls) are chained by box overlap
between consecutive frames. Tracklets are then joined into people by average-linkage clustering of their
embeddings, never joining two that share a frame (one person is not in two places), so a person who
is cut away from and comes back keeps one id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tsav_deploy.faces.face import Face, match_boxes

PERSON_CHOICES = ("main", "all")
_LINK_IOU = 0.3


@dataclass
class Track:
    """One person: ``faces`` maps frame index to that frame's face."""

    id: int
    faces: dict[int, Face] = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        return sorted(self.faces)

    @property
    def median_size(self) -> float:
        return float(np.median([face.size for face in self.faces.values()])) if self.faces else 0.0


def _tracklets(per_frame: Sequence[Sequence[Face]]) -> list[dict[int, Face]]:
    """Group faces by tracklet id; chain faces that have none by IoU with the previous frame's."""
    by_id: dict[int, dict[int, Face]] = {}
    chains: list[dict[int, Face]] = []
    previous: list[tuple[Face, int]] = []  # untracked faces of the previous frame, with their chain
    for index, faces in enumerate(per_frame):
        untracked = []
        for face in faces:
            if face.tracklet is None:
                untracked.append(face)
            else:
                by_id.setdefault(face.tracklet, {})[index] = face
        pairs = match_boxes([f.box for f, _ in previous], [f.box for f in untracked], _LINK_IOU)
        chain_of = {j: previous[i][1] for i, j in pairs}
        current = []
        for j, face in enumerate(untracked):
            if j not in chain_of:
                chain_of[j] = len(chains)
                chains.append({})
            chains[chain_of[j]][index] = face
            current.append((face, chain_of[j]))
        previous = current
    return list(by_id.values()) + chains


def _cluster(embeddings: list[np.ndarray | None], frames: list[set[int]], threshold: float) -> list[list[int]]:
    """Average-linkage agglomeration of tracklet embeddings (Euclidean, below ``threshold``); tracklets
    without an embedding, or sharing a frame, stay apart."""
    known = [i for i, e in enumerate(embeddings) if e is not None]
    groups = [[i] for i in known]
    if not known:
        return [[i] for i in range(len(embeddings))]
    centroids = np.stack([embeddings[i] for i in known]).astype(np.float64)
    spans = [set(frames[i]) for i in known]
    distance = np.full((len(known), len(known)), np.inf)

    def refresh(a: int) -> None:
        row = np.linalg.norm(centroids - centroids[a], axis=1)
        for c in range(len(known)):
            if c == a or not groups[c] or not spans[a].isdisjoint(spans[c]):
                row[c] = np.inf
        distance[a, :] = distance[:, a] = row

    for a in range(len(known)):
        refresh(a)
    while True:
        a, b = np.unravel_index(np.argmin(distance), distance.shape)
        if not distance[a, b] < threshold:
            break
        weight_a, weight_b = len(groups[a]), len(groups[b])
        centroids[a] = (weight_a * centroids[a] + weight_b * centroids[b]) / (weight_a + weight_b)
        spans[a] |= spans[b]
        groups[a] += groups[b]
        groups[b] = []
        distance[b, :] = distance[:, b] = np.inf
        refresh(a)
    return [g for g in groups if g] + [[i] for i, e in enumerate(embeddings) if e is None]


def track_faces(per_frame: Sequence[Sequence[Face]], identity_threshold: float = 0.6) -> list[Track]:
    """People in a video from its per-frame faces (list position = frame index).

    ``identity_threshold`` is the backend's same-person embedding distance
    (``backend.identity_threshold``). Tracks are numbered by first appearance.
    """
    tracklets = _tracklets(per_frame)
    embeddings = []
    for tracklet in tracklets:
        found = [face.embedding for face in tracklet.values() if face.embedding is not None]
        embeddings.append(np.mean(found, axis=0) if found else None)
    groups = _cluster(embeddings, [set(t) for t in tracklets], identity_threshold)
    people = []
    for group in groups:
        faces: dict[int, Face] = {}
        for i in group:
            faces.update(tracklets[i])
        people.append(faces)
    people.sort(key=min)
    return [Track(id=n, faces=faces) for n, faces in enumerate(people)]


def main_track(tracks: Sequence[Track]) -> Track | None:
    """The person seen in most frames (ties: the larger median face), or None without any."""
    return max(tracks, key=lambda t: (len(t.faces), t.median_size), default=None)


def select_tracks(tracks: Sequence[Track], person: str = "main") -> list[Track]:
    """``--person main``: the main person only; ``all``: every person."""
    if person not in PERSON_CHOICES:
        raise ValueError(f"person must be one of {PERSON_CHOICES}, got {person!r}")
    if person == "all":
        return list(tracks)
    main = main_track(tracks)
    return [] if main is None else [main]
