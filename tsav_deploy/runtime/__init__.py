"""Inference over any backend: ``Engine.load(export_dir_or_checkpoint, engine="auto")``."""

from tsav_deploy.runtime.engine import AUTO_ORDER, ENGINES, Engine

__all__ = ["Engine", "ENGINES", "AUTO_ORDER"]
