"""The pipeline's front door: ``Predictor`` turns videos into ``Annotation`` tables."""

from .predictor import Predictor
from .results import Annotation, read_table

__all__ = ["Predictor", "Annotation", "read_table"]
