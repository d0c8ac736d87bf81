"""Versioned schemas of every piece of keyed state, every topic and every Cassandra table."""
