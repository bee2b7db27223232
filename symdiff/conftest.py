"""Doctest namespace: every docstring example may use ``sd`` and ``np``."""

import numpy as np
import pytest

import symdiff as sd


@pytest.fixture(autouse=True)
def _namespace(doctest_namespace):
    doctest_namespace["sd"] = sd
    doctest_namespace["np"] = np
