"""Send a recording to a URL as MPEG-TS at its own pace, as a camera or encoder would (a test
helper, run as a process of its own): ``python stream_sender.py VIDEO URL``; and :func:`repeat`,
which makes longer recordings from the shared ones.

Packets are copied untouched (no re-encode) and each is sent when its time comes, counted from the
first packet. Connecting is retried for a while, so the receiver may start listening later.
"""

from __future__ import annotations

import sys
import time

import av


def connect(url: str, streams: list, wait_s: float = 120.0) -> tuple[av.container.OutputContainer, dict]:
    """The output container, connected (PyAV connects when the header is written), and its streams
    by input stream index; the receiver may take ``wait_s`` to start listening (a loaded machine)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        out = av.open(url, "w", format="mpegts")
        outputs = {s.index: out.add_stream_from_template(s) for s in streams}
        try:
            out.start_encoding()
            return out, outputs
        except (av.FFmpegError, OSError):
            time.sleep(0.05)
    raise SystemExit(f"{url}: nobody listening")


def send(video: str, url: str) -> int:
    with av.open(video) as source:
        streams = [s for s in source.streams if s.type in ("video", "audio")]
        out, outputs = connect(url, streams)
        with out:
            started = first = None
            sent = 0
            for packet in source.demux(streams):
                if packet.dts is None:  # the demuxer's flush packets
                    continue
                when = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
                if started is None:
                    started, first = time.monotonic(), when
                delay = started + (when - first) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                packet.stream = outputs[packet.stream.index]
                out.mux(packet)
                sent += 1
    return sent


def repeat(video: str, out: str, copies: int, audio_copies: int | None = None) -> None:
    """``video`` remuxed ``copies`` times back to back into ``out`` (no re-encode), its audio only
    in the first ``audio_copies`` (default: all): a longer real recording, or one whose audio ends
    well before its pictures."""
    with av.open(video) as first:
        media = [s for s in first.streams if s.type in ("video", "audio")]
        length = max(float(s.duration * s.time_base) for s in media) + 0.1
    with av.open(out, "w") as sink:
        outputs = None
        audio_copies = copies if audio_copies is None else audio_copies
        kinds = ("video", "audio") if audio_copies else ("video",)  # no audio at all: no audio stream
        for copy in range(copies):
            with av.open(video) as source:
                streams = [s for s in source.streams if s.type in kinds]
                if outputs is None:
                    outputs = {s.index: sink.add_stream_from_template(s) for s in streams}
                for packet in source.demux(streams):
                    if packet.dts is None or (packet.stream.type == "audio" and copy >= audio_copies):
                        continue
                    shift = round(copy * length / packet.time_base)
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = outputs[packet.stream.index]
                    sink.mux(packet)


if __name__ == "__main__":
    print(send(sys.argv[1], sys.argv[2]), flush=True)
