"""Insight Engine: features on Spark, training on Ray Tune, registry in MLflow, serving on Ray Serve."""

from engine.errors import InsightError

__all__ = ["InsightError", "__version__"]
__version__ = "0.1.0"
