"""`liverec state check` takes the savepoint location as Flink prints it (a `file:` URI) or as a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.state_check import metadata_path


@pytest.fixture
def savepoint(tmp_path: Path) -> Path:
    d = tmp_path / "savepoint-7ca434-d92dfdec1f3e"
    d.mkdir()
    (d / "_metadata").write_bytes(b"\x00")
    return d


@pytest.mark.parametrize("form", ["path", "file:{}", "file://{}", "path/_metadata"])
def test_every_form_flink_prints_finds_the_metadata(savepoint: Path, form: str) -> None:
    text = str(savepoint) if form == "path" else str(savepoint / "_metadata") if form == "path/_metadata" \
        else form.format(savepoint)
    assert metadata_path(text) == savepoint / "_metadata"


def test_a_directory_without_metadata_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no _metadata at .*chk-N"):
        metadata_path(f"file:{tmp_path}")


def test_a_remote_uri_is_refused_with_what_to_do(savepoint: Path) -> None:
    with pytest.raises(ConfigError, match="on s3:.*copy the savepoint"):
        metadata_path(f"s3://bucket{savepoint}")
