"""Fixtures every test gets."""
from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def restore_root_logger():
    """Tools and servers set up logging on the root logger; leave it as it was for the next test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
