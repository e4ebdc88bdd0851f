"""Media: what a file holds (``probe``), its frames (``frames``), its audio track (``audio``) and
live sources (``sources``), decoded with PyAV. The first stage of the data flow."""

from tsav_deploy.media.audio import read_audio
from tsav_deploy.media.frames import RgbConverter, iter_frames
from tsav_deploy.media.probe import VideoFrame, VideoInfo, probe

__all__ = ["probe", "iter_frames", "read_audio", "VideoInfo", "VideoFrame", "RgbConverter"]
