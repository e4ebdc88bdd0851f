"""The network's inputs, by the authors' rules: visual clips (``clips``: 8 face crops, frames
i-42 ... i) and aural windows (``windows``: the 10 s mel spectrogram around a frame)."""
