"""Insight Engine: features on Spark, training on Ray Tune, registry in MLflow, serving on Ray Serve."""

from engine.rayenv import ray_env

ray_env()  # before anything imports Ray: it reads RAY_AUTH_MODE at import (engine/rayenv.py)

from engine.errors import InsightError  # noqa: E402

__all__ = ["InsightError", "__version__"]
__version__ = "0.1.0"
