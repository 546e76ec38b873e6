"""MLflow model registry: versions, aliases, loading."""
