"""The local default stack: Kafka (KRaft) and Cassandra from Maven Central jars, run on loopback.

Everything lives under `Settings.cache_dir` (default `<repo>/.cache`): the Maven repository, the
resolved jars, server data, pid files and logs (the last three under `Settings.stack_dir`, which a
second stack moves elsewhere). Nothing is installed outside the repository.
"""
