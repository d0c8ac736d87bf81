"""Flink job graphs. Each module exposes `build(env, settings, ...)` and a `main` for `flink run -py`."""
