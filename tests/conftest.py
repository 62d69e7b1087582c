import os

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share the cores: one thread each (also for the stages and torchrun
    # processes the tests start), or the thread pools oversubscribe the machine.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_prepared_dir(tmp_path_factory):
    """The embedded digits dataset prepared once for the whole session: its folder (read it,
    or copy it to change it)."""
    from dnas.config import Prepare
    from dnas.data import prepare_dataset

    root = tmp_path_factory.mktemp("prepared")
    prepare_dataset("digits", Prepare(), root)
    return root / "digits"


@pytest.fixture(scope="session")
def digits_prepared(digits_prepared_dir):
    """The embedded digits dataset prepared once for the whole session, loaded."""
    from dnas.data import load_prepared

    return load_prepared(digits_prepared_dir)
