"""``resources``: GPUs and workers per trial, checked at validation (exit 2, naming the field) and against
the cluster before anything is written."""

import pytest
import yaml

from hpsearch.errors import SpecError
from hpsearch.raysetup import ClusterView, NodeGroup, check_cluster
from hpsearch.spec import parse_spec
from hpsearch.trialsetup import concurrent_trials
from tests.helpers import QUICKSTART, hpsearch, write_spec

OWN = "tests.integration_tests.own_training"


def spec_with(resources, trainable=None):
    data = yaml.safe_load(QUICKSTART.read_text())
    data["resources"] = resources
    if trainable is not None:
        data.update(trainable=trainable, task="regression", data=None, space={"root": "/x", "lr": 0.1, "hidden": 4})
        data["search"].update(metric="val_mse", mode="min")
    return data


@pytest.mark.parametrize(
    "resources, trainable, field, says",
    [
        ({"workers": 2, "gpu": 0.5}, None, "resources.gpu", "needs whole GPUs"),
        ({"gpu": 1.5}, None, "resources.gpu", "whole GPUs"),
        ({"gpu": 2}, None, "resources.gpu", "one GPU per worker: give at most 1 (a fraction shares one"),
        ({"workers": 0}, None, "resources.workers", ">= 1"),
        ({"workers": 2}, f"{OWN}:csv_regression", "resources.workers", "@hpsearch.trainables.data_parallel"),
    ],
)
def test_resources_a_trial_cannot_use_are_refused_naming_the_field(resources, trainable, field, says):
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(resources, trainable))
    assert any(p.path == field and says in p.message for p in caught.value.problems), caught.value.problems


def test_resources_a_trial_can_use_are_accepted():
    assert parse_spec(spec_with({"workers": 4, "cpu": 2})).resources.workers == 4
    assert parse_spec(spec_with({"workers": 2, "gpu": 1})).resources.gpu == 1
    assert parse_spec(spec_with({"gpu": 0.25})).resources.workers == 1
    own = parse_spec(spec_with({"workers": 2, "gpu": 2}, f"{OWN}:csv_data_parallel"))  # its own use of 2 GPUs
    assert own.resources.gpu == 2


def test_validate_exits_2_for_a_trainable_that_cannot_run_data_parallel(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", spec_with({"workers": 2}, f"{OWN}:csv_regression"))
    done = hpsearch("validate", spec, cwd=tmp_path)
    assert done.returncode == 2 and "resources.workers" in done.stderr, done.stderr


NODES = [("a", {"CPU": 8.0, "GPU": 2.0}), ("b", {"CPU": 8.0, "GPU": 2.0})]


def test_a_group_may_span_nodes_but_not_exceed_them():
    check_cluster(parse_spec(spec_with({"workers": 4, "gpu": 1, "cpu": 2})), "s3://b/p", ClusterView(NODES))
    with pytest.raises(SpecError) as caught:  # 5 workers of 1 GPU: the two nodes hold 4
        check_cluster(parse_spec(spec_with({"workers": 5, "gpu": 1, "cpu": 2})), "s3://b/p", ClusterView(NODES))
    (problem,) = caught.value.problems
    assert problem.path == "resources.workers" and "together hold 4" in problem.message
    with pytest.raises(SpecError) as caught:  # a worker of 4 GPUs: no node has that
        check_cluster(
            parse_spec(spec_with({"workers": 2, "gpu": 4}, f"{OWN}:csv_data_parallel")), "s3://b/p", ClusterView(NODES)
        )
    (problem,) = caught.value.problems
    assert problem.path == "resources.gpu" and "each worker of a trial asks for cpu=1, gpu=4" in problem.message
    # an autoscaler that can add such nodes: accepted (the group waits for them)
    grows = ClusterView([("head", {"CPU": 2.0})], [NodeGroup("gpu", {"CPU": 8.0, "GPU": 2.0}, max_count=8)])
    check_cluster(parse_spec(spec_with({"workers": 5, "gpu": 1})), "s3://b/p", grows)


def test_no_more_groups_run_at_once_than_the_cluster_holds():
    spec = parse_spec(spec_with({"workers": 2, "cpu": 1}))  # max_concurrent: 2
    assert concurrent_trials(spec, {"CPU": 2.0}) == 1
    assert concurrent_trials(spec, {"CPU": 16.0}) == 2
    gpus = parse_spec(spec_with({"workers": 2, "gpu": 1}))
    assert concurrent_trials(gpus, {"CPU": 64.0, "GPU": 3.0}) == 1
    assert concurrent_trials(parse_spec(spec_with({"cpu": 1})), {"CPU": 1.0}) == 2  # one worker: Tune decides
