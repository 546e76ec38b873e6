"""Feature store: views (spec), Spark execution, point-in-time join, snapshots."""

from engine.features.asof import asof_join

__all__ = ["asof_join"]
