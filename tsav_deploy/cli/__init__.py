"""The ``tsav`` command: parses options, calls the library and prints (one module per command group)."""

import importlib

from tsav_deploy.cli.app import app

# Importing a group's module registers its commands; this order is the order of `tsav --help`.
for _group in ("weights", "export", "annotate", "live", "serve", "report", "bench", "demo", "train"):
    importlib.import_module(f"tsav_deploy.cli.{_group}")

__all__ = ["app"]
