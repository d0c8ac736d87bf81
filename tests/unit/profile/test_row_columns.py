"""The JSON rows the job hands to the Cassandra sink name exactly the columns of their tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from operators.items.logic import item_rows_json
from operators.profile.logic import SessionSummary
from operators.profile.rows import profile_json, session_row_json
from state_schemas.item_cols import ItemCols
from tests.contracts.strategies import typical_profile

CQL = Path(__file__).resolve().parents[3] / "state_schemas" / "cql"


def columns(table: str) -> set[str]:
    """Column names of a table from the project's CQL (CREATE TABLE plus ALTER TABLE ... ADD)."""
    text = "\n".join(p.read_text() for p in sorted(CQL.glob("*.cql")))
    body = re.search(rf"CREATE TABLE IF NOT EXISTS \{{keyspace\}}\.{table} \((.*?)\n\);", text, re.S)
    assert body, table
    cols = {line.split()[0] for line in body.group(1).splitlines()
            if line.strip() and not line.strip().startswith("PRIMARY KEY")}
    cols |= set(re.findall(rf"ALTER TABLE \{{keyspace\}}\.{table} ADD IF NOT EXISTS (\w+)", text))
    return cols


def test_profile_rows_carry_every_column_of_user_profiles() -> None:
    assert set(json.loads(profile_json(typical_profile(), 1))) == columns("user_profiles")


def test_session_rows_carry_every_column_of_sessions() -> None:
    s = SessionSummary("u1", "u1:5", 5, 9, 2, {"view": 2}, {"books": 2}, 10, False, 4)
    assert set(json.loads(session_row_json(s))) == columns("sessions")


def test_item_rows_carry_every_column_of_item_vectors() -> None:
    c = ItemCols(("i1",), np.array([2], np.uint64), np.array([5], np.uint64), np.array([7], np.int64),
                 np.array([0.5]), np.zeros((1, 4), np.float32))
    (_, text), = item_rows_json(c, 9)
    assert set(json.loads(text)) == columns("item_vectors")
