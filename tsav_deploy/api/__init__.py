"""The pipeline's front door: ``Predictor`` turns videos into ``Annotation`` tables."""

from tsav_deploy.api.annotation import Annotation, read_table
from tsav_deploy.api.options import PredictorOptions
from tsav_deploy.api.predictor import Predictor

__all__ = ["Predictor", "Annotation", "read_table", "PredictorOptions"]
