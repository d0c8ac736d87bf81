"""In-stream serving: request validation, query building, re-ranking with fallbacks, shard merging."""
