"""liverec job assembly, sources/sinks, local infrastructure and CLI entry points."""
