import os
import sys

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, like the target machine)."""
    import ray

    # Ray's workers must import the test helpers (a user's own trainable module, in effect).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from hpsearch.raysetup import init_ray

    init_ray(None, num_cpus=2)
    yield
    ray.shutdown()
