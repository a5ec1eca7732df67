"""Fixtures of the training tests: a tiny model of every supported encoder family (built once)."""

from __future__ import annotations

import pytest

from tests.train.families import FAMILIES, make_tiny_family


@pytest.fixture(scope="session")
def family_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("families")
    return {f: make_tiny_family(root / f, f) for f in FAMILIES}
