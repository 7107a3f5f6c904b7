"""Fixtures of the build tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance for a module's Ray builds (the engine uses the open session)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()
