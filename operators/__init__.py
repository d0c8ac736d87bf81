"""One package per Flink function: pure logic (no pyflink import) plus a thin Flink adapter."""
