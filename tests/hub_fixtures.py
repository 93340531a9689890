"""pytest fixtures for the in-memory test Hub (tests/hubserver.py); registered from conftest.py."""
from __future__ import annotations

import pytest

from hubserver import HubServer


@pytest.fixture
def hub_server():
    """A fresh test Hub on 127.0.0.1 (free port): ``.endpoint``, ``.seed()``, ``.tag()``, ``.files()``, ``.requests``."""
    with HubServer() as hub:
        yield hub
