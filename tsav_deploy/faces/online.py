"""People in a live stream, decided as frames arrive (the causal counterpart of :mod:`.tracking`).

The video tracker (:mod:`.video`) gives each followed face a tracklet id and, on a tracklet's first
few roughly frontal detection frames, an identity embedding. Offline, tracklets are joined into people
once the whole video is seen; here a tracklet is its own person until its mean embedding lies within
the backend's identity threshold of a person's centroid (the mean of that person's tracklet means),
checked whenever the tracklet gains an embedding while it is still alone. Two tracklets seen in one
frame are never joined (one person is not in two places). The main person is the one with a face in
the most frames so far, so it can change as the stream goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .face import Face


@dataclass
class LivePerson:
    id: int  # 0, 1, … by first appearance
    tracklets: set[int] = field(default_factory=set)
    frames: int = 0  # frames with a face
    last_seen: int = -1  # the last frame number with a face


class OnlinePeople:
    """Feed each frame's faces in order to :meth:`update`; it says whose face each is."""

    def __init__(self, identity_threshold: float) -> None:
        self.threshold = identity_threshold
        self.people: dict[int, LivePerson] = {}
        self._person_of: dict[int, int] = {}  # tracklet -> person id
        self._first_frame: dict[int, int] = {}  # tracklet -> the frame it started on
        self._embeddings: dict[int, list[np.ndarray]] = {}  # tracklet -> its embeddings
        self._last_id = -1

    def update(self, number: int, faces: list[Face]) -> dict[int, Face]:
        """The faces of frame ``number`` by person id (one face per person: the larger one should
        two tracklets of one person ever meet)."""
        for k, face in enumerate(faces):
            if face.tracklet is None:  # faces the video tracker did not follow: one frame each
                face.tracklet = -(number * 1000 + k + 1)
        tracklets = [face.tracklet for face in faces]
        for tracklet in tracklets:
            if tracklet not in self._person_of:
                self._start(tracklet, number)
        present = {self._person_of[t] for t in tracklets}
        for face, tracklet in zip(faces, tracklets):
            if face.embedding is not None:
                self._embeddings.setdefault(tracklet, []).append(np.asarray(face.embedding, dtype=np.float64))
                self._identify(tracklet, present)
        by_person: dict[int, Face] = {}
        for face, tracklet in zip(faces, tracklets):
            person = self._person_of[tracklet]
            if person not in by_person or face.size > by_person[person].size:
                by_person[person] = face
        for person in by_person:
            self.people[person].frames += 1
            self.people[person].last_seen = number
        return by_person

    @property
    def main(self) -> int | None:
        """The person with a face in the most frames so far (ties: the earlier one), or None."""
        if not self.people:
            return None
        return max(self.people.values(), key=lambda p: (p.frames, -p.id)).id

    def _start(self, tracklet: int, number: int) -> None:
        self._last_id += 1
        person = LivePerson(self._last_id, {tracklet})
        self.people[person.id] = person
        self._person_of[tracklet] = person.id
        self._first_frame[tracklet] = number

    def _mean(self, tracklet: int) -> np.ndarray | None:
        found = self._embeddings.get(tracklet)
        return np.mean(found, axis=0) if found else None

    def _centroid(self, person: LivePerson) -> np.ndarray | None:
        means = [m for m in (self._mean(t) for t in person.tracklets) if m is not None]
        return np.mean(means, axis=0) if means else None

    def _identify(self, tracklet: int, present: set[int]) -> None:
        """Join a tracklet that is still a person of its own to the nearest earlier person within the
        threshold that had no face since the tracklet started (nor in this frame: ``present``)."""
        own = self.people[self._person_of[tracklet]]
        if len(own.tracklets) > 1:
            return
        mean = self._mean(tracklet)
        best, best_distance = None, self.threshold
        for person in self.people.values():
            if person.id in present or person.last_seen >= self._first_frame[tracklet]:
                continue
            centroid = self._centroid(person)
            if centroid is None:
                continue
            distance = float(np.linalg.norm(centroid - mean))
            if distance < best_distance:
                best, best_distance = person, distance
        if best is None:
            return
        best.tracklets.add(tracklet)
        best.frames += own.frames
        best.last_seen = max(best.last_seen, own.last_seen)
        self._person_of[tracklet] = best.id
        del self.people[own.id]
