"""What hpsearch reads of a live Ray cluster before a search starts."""

import pytest

pytestmark = pytest.mark.integration


def test_the_autoscaler_config_is_read_where_ray_keeps_it(ray_session):
    """The one private Ray API hpsearch reads (no public one exists): fails loudly if an upgrade moves it."""
    from ray._private import state

    from hpsearch.raysetup import autoscaling_groups, cluster_view

    assert hasattr(state.state, "get_cluster_config"), "Ray moved get_cluster_config: see hpsearch/raysetup.py"
    assert autoscaling_groups() == []  # a local Ray has no autoscaler
    view = cluster_view()
    assert len(view.nodes) == 1 and view.nodes[0][1]["CPU"] >= 1 and view.groups == []
