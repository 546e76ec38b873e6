"""Numba statistics kernels. Pure NumPy in, numbers out; no Ray, Spark, MLflow or FastAPI."""
