"""The dashboard's cache plumbing: file signatures as cache keys, the `file_loader` decorator that hides the cached
(value, error) convention, and `DataError`, the one error a page catches for a file it cannot read."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from core.errors import UserError
from core.runfolder import Run


class DataError(UserError):
    """A run file exists but cannot be read (damaged JSON, garbage CSV, not an image)."""


def signature(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file or folder; None when absent. The cache key that makes changed files re-read."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return (s.st_mtime_ns, s.st_size)


def damaged(path: Path, e: BaseException) -> DataError:
    return DataError(f"{path}: damaged or unreadable ({type(e).__name__}: {e}); restore or regenerate it")


# ---------------------------------------------------------------------------------------------- the loaders
def caches_errors(source: Callable[..., Path], max_entries: int = 100):
    """`@caches_errors(source)` over `def load(*key) -> T`: cached with `st.cache_data` by its (hashable) arguments,
    its failure cached too, as (value, error), and raised as DataError on every call: a UserError's message as it
    is (it names the file and key), anything else as `source(*key)` damaged. The one (value, error) convention of
    the dashboard's loaders lives here; the loaders just load."""

    def wrap(load: Callable[..., Any]) -> Callable[..., Any]:
        def cached(*key: Any) -> tuple[Any, str | None]:
            try:
                return load(*key), None
            except UserError as e:
                return None, str(e)
            except Exception as e:  # noqa: BLE001 - an unreadable file must not take the page down
                return None, str(damaged(source(*key), e))

        # st.cache_data keys a function by module, qualified name and source: name each wrapped loader apart
        cached.__qualname__ = cached.__name__ = f"_cached_{load.__module__}_{load.__name__}"
        cached = st.cache_data(show_spinner=False, max_entries=max_entries)(cached)

        @functools.wraps(load)
        def call(*key: Any) -> Any:
            return unwrap(cached(*key))

        return call

    return wrap


def file_loader(*files: str, max_entries: int = 100) -> Callable[[Callable[[Run], Any]], Callable[[str], Any]]:
    """`@file_loader("scores_path")` over `def scores(run: Run) -> T` gives the page-facing `scores(run_path) -> T`
    (`caches_errors`), keyed by the (mtime_ns, size) of the named `Run` paths: a changed file is read again on the
    next rerun, an unchanged one never re-parsed. A failure other than a UserError names `files[0]` as damaged."""

    def wrap(load: Callable[[Run], Any]) -> Callable[[str], Any]:
        def read(run_path: str, key: tuple) -> Any:
            return load(Run(run_path))

        read.__module__, read.__name__ = load.__module__, load.__name__
        cached = caches_errors(lambda run_path, key: getattr(Run(run_path), files[0]), max_entries)(read)

        @functools.wraps(load)
        def loader(run_path: str) -> Any:
            run = Run(run_path)
            return cached(str(run_path), tuple(signature(getattr(run, f)) for f in files))

        return loader

    return wrap


def unwrap(result: tuple[Any, str | None]) -> Any:
    """Cached loaders return (value, error) so that errors are cached too; this raises the error."""
    value, error = result
    if error:
        raise DataError(error)
    return value
