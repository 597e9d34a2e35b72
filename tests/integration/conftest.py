"""The integration tests' shared servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3server import MotoProcess


@pytest.fixture(scope="session")
def moto_child() -> Iterator[MotoProcess]:
    """One moto child for the session: starting one costs about 2 s and ending it 1 s, and the
    upload tests ask for one each. Tests get it reset (upload_support.py `moto`, `any_s3`)."""
    server = MotoProcess()
    server.start()
    try:
        yield server
    finally:
        server.close()
