"""The ``tsav`` command: parses options, calls the library and prints."""

from tsav_deploy.cli.main import app

__all__ = ["app"]
