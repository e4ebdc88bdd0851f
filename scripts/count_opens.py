"""How often `tsav annotate` opens a video, and from where: each `av.open` of the input file is
recorded with the package function that asked for it (probe, face pass, network pass, audio,
overlay...). Run from a checkout's root, so that checkout's package is the one imported:

    python scripts/count_opens.py VIDEO EXPORT_DIR [tsav annotate options...]
"""

from __future__ import annotations

import collections
import pathlib
import sys
import tempfile
import traceback

import av


def main() -> None:
    video, export, *extra = sys.argv[1:]
    name = pathlib.Path(video).name
    opened: collections.Counter[str] = collections.Counter()
    real_open = av.open

    def counting_open(file, *args, **kwargs):
        if pathlib.Path(str(file)).name == name and "w" not in args[:1] and kwargs.get("mode", "r") == "r":
            frames = [f for f in traceback.extract_stack()[:-1] if "tsav_deploy" in f.filename]
            where = " < ".join(f"{pathlib.Path(f.filename).stem}.{f.name}" for f in reversed(frames[-3:]))
            opened[where] += 1
        return real_open(file, *args, **kwargs)

    av.open = counting_open
    sys.path.insert(0, str(pathlib.Path.cwd()))
    from tsav_deploy.cli import app

    with tempfile.TemporaryDirectory() as out:
        args = ["annotate", video, "--model", export, "--out", out, *extra]
        try:
            app(args, standalone_mode=False)
        except SystemExit:
            pass
    for where, count in sorted(opened.items(), key=lambda item: -item[1]):
        print(f"{count:3d}  {where}")
    print(f"{sum(opened.values()):3d}  opens of {name} in all")


if __name__ == "__main__":
    main()
