import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The engine runs many tiny ops; on 2 cores intra-op threading makes them ~4x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
