"""What the C backend's test modules share: the mark that skips them without cffi or a C
compiler, and one compile cache for the session (``from .c_support import c_cache, needs_c``;
``pytestmark = needs_c``; the autouse fixture applies to the module that imports it)."""

from __future__ import annotations

import os
import shutil

import pytest

from symdiff.backends import installed

needs_c = pytest.mark.skipif(
    not installed("c") or shutil.which(os.environ.get("CC") or "cc") is None,
    reason="the c backend needs cffi and a C compiler",
)


@pytest.fixture(autouse=True)
def c_cache(tmp_path_factory, monkeypatch):
    """Built libraries go to one folder of the session's, shared by the C test modules."""
    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "symdiff-cache"))
