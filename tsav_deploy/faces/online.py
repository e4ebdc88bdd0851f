"""People in a live stream, decided as frames arrive (the causal counterpart of :mod:`.tracking`).

The video tracker (:mod:`.video`) gives each followed face a tracklet id and, on a tracklet's first
few roughly frontal detection frames, an identity embedding. Offline, tracklets are joined into people
once the whole video is seen; here a tracklet is its own person until its mean embedding lies within
the backend's identity threshold of a person's centroid (the mean of that person's tracklet means),
checked whenever the tracklet gains an embedding while it is still alone. Two tracklets seen in one
frame are never joined (one person is not in two places).

The main person is the one with a face in the most frames so far; another takes over only once it
leads by ``MAIN_LEAD`` frames, so two people seen about equally do not make it flicker.

Memory stays bounded however long the stream: a tracklet not seen for ``TRACKLET_IDLE`` frames is
folded into its person (its mean embedding kept, at most ``KEPT_MEANS`` per person), and a person not
seen for ``PERSON_IDLE`` frames (other than the main person) is forgotten: should they come back,
they are a new person.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tsav_deploy.faces.face import Face

MAIN_LEAD = 30  # frames (1 s at 30 fps)
TRACKLET_IDLE = 300
PERSON_IDLE = 18_000  # 10 minutes at 30 fps
KEPT_MEANS = 16
_PRUNE_EVERY = 256


@dataclass
class LivePerson:
    id: int  # 0, 1, … by first appearance, never reused
    tracklets: set[int] = field(default_factory=set)  # those still followed or recently seen
    frames: int = 0  # frames with a face
    last_seen: int = -1  # the last frame number with a face
    means: list[np.ndarray] = field(default_factory=list)  # mean embeddings of tracklets folded in


class OnlinePeople:
    """Feed each frame's faces in order to :meth:`update`; it says whose face each is."""

    def __init__(self, identity_threshold: float) -> None:
        self.threshold = identity_threshold
        self.people: dict[int, LivePerson] = {}
        self.main: int | None = None  # the main person's id, None before anyone was seen
        self._person_of: dict[int, int] = {}  # tracklet -> person id
        self._first_frame: dict[int, int] = {}  # tracklet -> the frame it started on
        self._last_frame: dict[int, int] = {}  # tracklet -> the last frame it was seen on
        self._embeddings: dict[int, list[np.ndarray]] = {}  # tracklet -> its embeddings
        self._last_id = -1
        self.count = 0  # people seen so far (a tracklet that joins someone is not a new person)

    def update(self, number: int, faces: list[Face]) -> dict[int, Face]:
        """The faces of frame ``number`` by person id (one face per person: the larger one should
        two tracklets of one person ever meet)."""
        tracklets = self._follow(number, faces)
        present = {self._person_of[t] for t in tracklets}
        for face, tracklet in zip(faces, tracklets):
            if face.embedding is not None:
                self._embeddings.setdefault(tracklet, []).append(np.asarray(face.embedding, dtype=np.float64))
                self._identify(tracklet, present)
        by_person = self._by_person(faces, tracklets)
        for person in by_person:
            self.people[person].frames += 1
            self.people[person].last_seen = number
        self._choose_main()
        if number % _PRUNE_EVERY == 0:
            self._prune(number)
        return by_person

    def _follow(self, number: int, faces: list[Face]) -> list[int]:
        """Each face's tracklet (a face the video tracker did not follow is a tracklet of one frame),
        a new one starting as a person of its own."""
        for k, face in enumerate(faces):
            if face.tracklet is None:
                face.tracklet = -(number * 1000 + k + 1)
        tracklets = [face.tracklet for face in faces]
        for tracklet in tracklets:
            if tracklet not in self._person_of:
                self._start(tracklet, number)
            self._last_frame[tracklet] = number
        return tracklets

    def _by_person(self, faces: list[Face], tracklets: list[int]) -> dict[int, Face]:
        by_person: dict[int, Face] = {}
        for face, tracklet in zip(faces, tracklets):
            person = self._person_of[tracklet]
            if person not in by_person or face.size > by_person[person].size:
                by_person[person] = face
        return by_person

    def _choose_main(self) -> None:
        if not self.people:
            return
        leader = max(self.people.values(), key=lambda p: (p.frames, -p.id))
        current = self.people.get(self.main)
        if current is None or leader.frames >= current.frames + MAIN_LEAD:
            self.main = leader.id

    def _start(self, tracklet: int, number: int) -> None:
        self._last_id += 1
        self.count += 1
        person = LivePerson(self._last_id, {tracklet})
        self.people[person.id] = person
        self._person_of[tracklet] = person.id
        self._first_frame[tracklet] = number

    def _mean(self, tracklet: int) -> np.ndarray | None:
        found = self._embeddings.get(tracklet)
        return np.mean(found, axis=0) if found else None

    def _centroid(self, person: LivePerson) -> np.ndarray | None:
        means = person.means + [m for m in (self._mean(t) for t in person.tracklets) if m is not None]
        return np.mean(means, axis=0) if means else None

    def _identify(self, tracklet: int, present: set[int]) -> None:
        """Join a tracklet that is still a person of its own to the nearest earlier person within the
        threshold that had no face since the tracklet started (nor in this frame: ``present``)."""
        own = self.people[self._person_of[tracklet]]
        if len(own.tracklets) > 1 or own.means:
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
        present.discard(own.id)
        present.add(best.id)  # a second tracklet of this frame cannot join the same person
        del self.people[own.id]
        self.count -= 1
        if self.main == own.id:
            self.main = best.id

    def _prune(self, number: int) -> None:
        for tracklet, last in list(self._last_frame.items()):
            if last >= number - TRACKLET_IDLE:
                continue
            person = self.people.get(self._person_of[tracklet])
            if person is not None:
                mean = self._mean(tracklet)
                if mean is not None:
                    person.means = (person.means + [mean])[-KEPT_MEANS:]
                person.tracklets.discard(tracklet)
            for table in (self._person_of, self._first_frame, self._last_frame, self._embeddings):
                table.pop(tracklet, None)
        for person in list(self.people.values()):
            if person.last_seen < number - PERSON_IDLE and person.id != self.main:
                del self.people[person.id]
