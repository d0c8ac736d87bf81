"""The hnswlib import runs in its own thread (pybind11's init deadlocks on pemja's extra thread states)."""

from __future__ import annotations

import sys
import threading

import pytest

from operators.ann import index


def test_first_import_runs_in_a_fresh_thread_and_returns_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "hnswlib")
    seen: list[str] = []
    sentinel = object()

    def fake_import(name: str) -> object:
        seen.append(f"{name}@{threading.current_thread().name}")
        return sentinel

    monkeypatch.setattr(index.importlib, "import_module", fake_import)
    assert index._import_hnswlib() is sentinel
    assert seen == ["hnswlib@liverec-hnswlib-import"]
    assert threading.current_thread().name != "liverec-hnswlib-import"


def test_loaded_module_is_reused_without_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str) -> object:
        raise AssertionError(f"imported {name} again")

    monkeypatch.setattr(index.importlib, "import_module", fail)
    assert index._import_hnswlib() is sys.modules["hnswlib"]


def test_import_error_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "hnswlib")

    def broken(name: str) -> object:
        raise ImportError(f"no {name} here")

    monkeypatch.setattr(index.importlib, "import_module", broken)
    with pytest.raises(ImportError, match="no hnswlib here"):
        index._import_hnswlib()
