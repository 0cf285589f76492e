"""Fixtures shared by the models' unit tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """Large networks on small maps: on a shared 2-core machine a second intra-op thread mostly
    waits (FlowNet2's forward ran 3x slower with two), so these modules pin one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
