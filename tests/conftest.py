"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Many tiny torch ops: one thread avoids OpenMP oversubscription on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
