"""The steps of the flow, one file each: what the CLI and ``jobs/`` run.

``data`` (sample data) -> ``features`` (Spark snapshot) -> ``train`` (Ray Tune, MLflow
registry, model card) -> ``drift`` (training window vs current window) -> ``monitor`` (live
traffic) -> ``retrain`` and ``rollout``; ``score`` for batches. The demo, which runs them
all, is :mod:`engine.demo`. Each stage takes the project config and the workspace,
calls the packages that do the work (``engine.features``, ``engine.train``,
``engine.registry``, ``engine.monitor``, ``serve``) and returns a small result to print.
A stage holds orchestration only.
"""
