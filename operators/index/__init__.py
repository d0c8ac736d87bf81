"""The serving index operator: HNSW over live item vectors, popularity and co-occurrence, per shard."""
