"""Online learner: pure numpy pieces the keyed Flink stages call, plus an in-process composition for replay.

User-keyed stage: `bpr_user_step` (new user vector + `ItemGrads`), `pair_messages` (co-occurrence
increments keyed by owner item), the user's recent-item window, scoring with `Blend` and `top_k`.
Item-keyed stage: `apply_item_update` / `apply_item_updates`, `apply_pairs`, popularity `bump`.
No pyflink import anywhere in this package.
"""

from __future__ import annotations

from operators.learner.blend import Blend, zscore
from operators.learner.bpr import (
    BPRParams,
    ItemGrad,
    ItemGrads,
    Vec,
    apply_item_update,
    apply_item_updates,
    bpr_loss,
    bpr_user_step,
    clip_norm,
    init_vector,
    key_rng,
    sample_negatives,
)
from operators.learner.cooc import (
    CoOccurrence,
    CoocParams,
    DenseCoOccurrence,
    apply_pairs,
    pair_messages,
    partners,
)
from operators.learner.frozen import FrozenMap
from operators.learner.popularity import bump, decay, log_popularity
from operators.learner.rank import top_k
from operators.learner.recommender import MostPopular, OnlineRecommender, RecommenderParams, ReplayModel

__all__ = [
    "BPRParams",
    "Blend",
    "CoOccurrence",
    "CoocParams",
    "DenseCoOccurrence",
    "FrozenMap",
    "ItemGrad",
    "ItemGrads",
    "MostPopular",
    "OnlineRecommender",
    "RecommenderParams",
    "ReplayModel",
    "Vec",
    "apply_item_update",
    "apply_item_updates",
    "apply_pairs",
    "bpr_loss",
    "bpr_user_step",
    "bump",
    "clip_norm",
    "decay",
    "init_vector",
    "key_rng",
    "log_popularity",
    "pair_messages",
    "partners",
    "sample_negatives",
    "top_k",
    "zscore",
]
