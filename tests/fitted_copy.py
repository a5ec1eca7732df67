"""Fixtures shared by the forget / audit / ledger tests: one fit per session, a fresh copy per test.

Fitting the tiny S3T takes seconds; the tests that mutate a workspace each get a byte copy of
one fitted workspace instead (its ``workspace.json`` repointed at the copy's own ledger).
Import the fixtures into a test module: ``from tests.fitted_copy import fitted_template, fitted_ws``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import tiny_config, toy_rows


@dataclass(frozen=True)
class Template:
    path: Path
    model: str
    train: list[dict]
    val: list[dict]

    @property
    def texts(self) -> dict[str, str]:
        return {r["id"]: r["text"] for r in self.train + self.val}


@pytest.fixture(scope="session")
def fitted_template(tmp_path_factory, tiny_model) -> Template:
    """A fitted workspace (m=2, L=3, B=3) on toy data whose validation records also have subjects."""
    from s3t import S3T

    root = tmp_path_factory.mktemp("fitted-template")
    train, val = toy_rows(120, seed=1, subjects=10), toy_rows(40, seed=2, subjects=10)
    est = S3T(tiny_config(tiny_model), workspace=root / "ws").fit(train, validation=val)
    est.ws_.ledger.close()
    return Template(root / "ws", tiny_model, train, val)


def copy_workspace(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    (dest / "workspace.json").write_text(json.dumps({"db": f"sqlite:///{dest / 'ledger.sqlite'}"}))
    return dest


@pytest.fixture
def fitted_ws(tmp_path, fitted_template):
    """A loaded S3T on a private copy of the template workspace."""
    from s3t import S3T

    est = S3T.load(copy_workspace(fitted_template.path, tmp_path / "ws"))
    assert str(tmp_path) in est.ws_.ledger.url  # never the shared template
    yield est
    est.ws_.ledger.close()
