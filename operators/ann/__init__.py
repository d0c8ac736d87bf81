"""In-stream approximate nearest-neighbour index over item vectors (pure logic, no pyflink import)."""

from operators.ann.index import AnnIndex

__all__ = ["AnnIndex"]
