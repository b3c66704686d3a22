import pytest

from detcore.data.shapes import generate_shapes


@pytest.fixture(scope="session")
def shapes_paths(tmp_path_factory):
    """A tiny shapes dataset (12 train / 6 val images of 96x128)."""
    root = tmp_path_factory.mktemp("shapes") / "data"
    return generate_shapes(
        str(root), num_train=12, num_val=6, seed=3, image_size=(96, 128), min_size=16, max_size=40
    )
