"""The job's batch steps run in one plain Python process, with no Flink, Kafka or Cassandra.

Why: it is the ceiling of what the Python work of the job costs per event (the same router, user,
item and index steps, the same encodings between them and of the state written back), measured beside
the job in `benchmarks/job_throughput.py`. Records travel as the job's bytes; feedback from the item
shards reaches the user stage's replica every ``item_flush_ms`` of *batches* (``batch_ms`` each), as
in the job when it keeps up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from operators.events.router import Progress, route
from operators.index.logic import IndexShard, apply_batch, apply_vector_batch
from operators.items.shard import ItemShard
from operators.profile.embedding import ItemTable
from operators.profile.shard import UserShard, step
from operators.serving.logic import EvalOutcome, finish, model_version
from pipeline.errors import ConfigError
from pipeline.jobs.liverec_job import bpr_params, router_params, shard_params, user_params
from pipeline.settings import Settings
from state_schemas import index_log, item_cols, seen_items, user_profile
from state_schemas.batches import decode_grads, decode_records, encode_grads, encode_records


def replay(settings: Settings, values: list[bytes], topics: list[str] | None = None,
           batch_size: int = 1_000, on_outcome: Callable[[EvalOutcome], None] | None = None) -> dict[str, Any]:
    """Push ``values`` (raw Kafka record values) through the batch steps, ``batch_size`` records a batch.

    ``on_outcome`` receives the online evaluation's outcome of every evaluation query, built exactly as
    the gather step builds it (`serving.logic.finish`): the offline figure of the job's own code path.
    """
    s = settings
    rp = router_params(s)
    up, bpr, sp = user_params(s), bpr_params(s), shard_params(s)
    topics = topics or [rp.events_topic] * len(values)
    progress = Progress(started_ms=0)
    users = {k: UserShard() for k in range(s.user_shards)}
    items = {k: ItemShard(bpr.dim) for k in range(s.item_shards)}
    index = {k: IndexShard(k, s.index_shards, sp) for k in range(s.index_shards)}
    refresh_every = max(1, s.index_refresh_ms // s.batch_ms)  # the adapter refreshes the graph by time
    for shard in index.values():
        shard.auto_sync = False
    table = ItemTable(bpr.dim)
    rng = np.random.default_rng(s.model_seed)
    dirty: dict[int, set[int]] = {k: set() for k in items}
    flush_every = max(1, s.item_flush_ms // s.batch_ms)
    counts = {"events": 0, "requests": 0, "dead_letters": 0, "partials": 0, "sessions": 0}
    model = model_version(s.embedding_dim, s.negatives, s.model_seed)
    if on_outcome is not None and s.index_shards != 1:
        msg = "batch replay: evaluation outcomes need index_shards = 1 (the gather step merges shards)"
        raise ConfigError(msg)
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    for b, start in enumerate(range(0, len(values), batch_size)):
        vals, tops = values[start : start + batch_size], topics[start : start + batch_size]
        routed = route(progress, list(vals), list(tops), [0] * len(vals), list(range(start, start + len(vals))),
                       now_ms=now, params=rp)
        counts["events"] += routed.events
        counts["requests"] += routed.requests
        counts["dead_letters"] += len(routed.dead_letters)
        watermark = progress.advance(now, rp)
        for shard, recs in routed.batches.items():
            wm, records = decode_records(encode_records(recs, watermark))
            us = users[shard]
            out = step(us, records, wm, table, rng, up)
            for u in out.changed:  # what the adapter writes back to keyed state
                user_profile.encode(us.profiles[u])
                if u in us.seen:
                    seen_items.encode(us.seen[u])
            counts["sessions"] += len(out.closed)
            for k, g in out.grads.items():
                changed = items[k].apply(bpr, decode_grads(encode_grads(g)), s.model_seed)
                item_cols.encode_log(items[k].cols(changed))  # what the adapter writes back to keyed state
                dirty[k].update(changed.tolist())
            for k, shares in out.index.items():
                if b % refresh_every == 0:
                    index[k].sync_index()
                res = apply_batch(index[k], shares)
                counts["partials"] += len(res.partials)
                if on_outcome is not None and s.index_shards == 1:
                    for part in res.partials:
                        _, outcome = finish([part], now_ms=now, model_version=model)
                        if outcome is not None:
                            on_outcome(outcome)
                index_log.encode(index[k].delta(res.items, res.cells))  # what the adapter writes back
        if b % flush_every == flush_every - 1:
            _feedback(items, dirty, table, index, s.index_shards)
    seconds = time.perf_counter() - t0
    return {**counts, "seconds": round(seconds, 3), "events_per_s": round(counts["events"] / seconds, 1)}


def _feedback(items: dict[int, ItemShard], dirty: dict[int, set[int]], table: ItemTable,
              index: dict[int, IndexShard], shards: int) -> None:
    from operators.index.logic import split_vector_batch
    from operators.profile.embedding import upsert_many
    from state_schemas.item_cols import decode_vector_batch, encode_vector_batch

    for k, shard in items.items():
        if not dirty[k]:
            continue
        batch = encode_vector_batch(shard.cols(np.asarray(sorted(dirty[k]), dtype=np.int64)))
        dirty[k] = set()
        cols = decode_vector_batch(batch)
        upsert_many(table, list(cols.ids), cols.vecs, cols.bias)
        for n, part in split_vector_batch(batch, shards):
            apply_vector_batch(index[n], decode_vector_batch(part))
