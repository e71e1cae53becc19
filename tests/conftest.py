import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _deterministic_float64():
    """Gradient checks run in float64; every test starts from the same seed."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (small tensors stepped one at a time: threads only add overhead)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float32_one_thread(one_thread):
    """The examples' precision and threading (the autouse fixture above sets float64)."""
    torch.set_default_dtype(torch.float32)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped only where no CUDA device exists."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
