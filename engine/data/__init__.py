"""Sample data with known ground truth, and readers for the project's tables."""

from engine.data.retail import SIZES, RetailParams, generate_retail

__all__ = ["SIZES", "RetailParams", "generate_retail"]
