"""Reading a search job's progress back from its log: the driver's Progress records, not its prose."""

import io

import pytest
import yaml

from hpsearch.errors import HpsearchError
from hpsearch.jobs import progress_of, without_records
from hpsearch.ledger import Ledger
from hpsearch.progress import ProgressPrinter
from hpsearch.protocol import Progress
from tests.helpers import fake_trial


def test_job_progress_is_read_from_the_last_progress_record():
    logs = "[2026-11-22 08:00:00,000 W 1 1] noise\n" + Progress(1, 30, 0.8).line() + "\n"
    logs += "[12/30] t012 stopped_early ... | running 2, stopped 5, best 0.9721 (t007) |  9s\n"
    logs += Progress(12, 30, 0.97211).line() + "\n"
    assert progress_of(logs) == ("12/30", "0.9721")
    assert progress_of("Runtime env is setting up.\n") == ("-", "-")
    assert progress_of(Progress(1, 30, None).line() + "\n") == ("1/30", "-")
    # a record cut off mid-write (the log is read while the job runs): the one before it counts
    assert progress_of(Progress(3, 30, 0.5).line() + "\n" + Progress(4, 30, 0.6).line()[:-5]) == ("3/30", "0.5000")
    # the prose a user sees is not parsed: a job that prints no records has no progress
    assert progress_of("[12/30] t012 stopped_early ... | best 0.9721 (t007) |  9s\n") == ("-", "-")


def test_the_printer_writes_the_records_a_job_reads_and_logs_hide_them():
    out = io.StringIO()
    ledger = Ledger(max_epochs=2, metric="val_accuracy", mode="max", listeners=[])
    printer = ProgressPrinter(lambda: ledger, num_trials=3, max_epochs=2, stream=out, records=True)
    ledger.listeners = [printer]
    for name, acc in (("a", 0.5), ("b", 0.75)):
        t = fake_trial(name)
        ledger.on_trial_start(0, [], t)
        ledger.on_trial_result(0, [], t, {"epoch": 2, "val_accuracy": acc})
        ledger.on_trial_complete(0, [], t)
    assert progress_of(out.getvalue()) == ("2/3", "0.7500")
    shown = without_records(out.getvalue())
    assert "hpsearch-progress" not in shown and shown.count("\n") == 2 and "[2/3] t002 completed" in shown


def test_a_resumed_search_says_where_it_starts_even_with_nothing_left_to_run():
    """A stop that lands as the last trials end leaves a resume with nothing to do: `hpsearch status` still
    reads how far the search got (it read no record at all before: "trials done -")."""
    from dataclasses import asdict

    from hpsearch.tracking.records import TrialRecord

    out = io.StringIO()
    ledger = Ledger(max_epochs=2, metric="val_accuracy", mode="max", listeners=[])
    ledger.listeners = [ProgressPrinter(lambda: ledger, num_trials=2, max_epochs=2, stream=out, records=True)]
    done = [
        TrialRecord(i, f"id{i}", {}, state="completed", epochs=2, metrics={"val_accuracy": v})
        for i, v in ((1, 0.5), (2, 0.7))
    ]
    ledger.set_state({"records": [asdict(r) for r in done]})
    assert progress_of(out.getvalue()) == ("2/2", "0.7000")
    assert "resumed: 2 of 2 trials already done, 0 to continue" in without_records(out.getvalue())


def test_a_local_folder_is_not_a_shared_filesystem(tmp_path):
    from hpsearch.raysetup import shared_filesystem

    assert not shared_filesystem(str(tmp_path / "not" / "yet" / "there"))
    mounts = tmp_path / "mounts"
    mounts.write_text(f"server:/export {tmp_path} nfs4 rw 0 0\n/dev/sda1 / ext4 rw 0 0\n")
    assert shared_filesystem(str(tmp_path / "sub"), mounts=str(mounts))
    assert not shared_filesystem("/usr", mounts=str(mounts))


def test_the_job_commands_import_no_ray_before_they_set_the_auth_mode():
    """Ray reads RAY_AUTH_MODE once, when it is imported: `hpsearch submit/status/...` must set it first."""
    import subprocess
    import sys

    code = "import sys, hpsearch.cli, hpsearch.jobs, hpsearch.spec; print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', 'mlflow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def gpu_spec(gpu=1.0, cpu=1.0):
    from hpsearch.spec import parse_spec
    from tests.helpers import QUICKSTART

    data = yaml.safe_load(QUICKSTART.read_text())
    data["resources"] = {"cpu": cpu, "gpu": gpu}
    return parse_spec(data)


def test_a_cluster_that_autoscales_its_gpu_workers_from_zero_is_accepted():
    """deploy/'s KubeRay cluster: a head with num-cpus 0 and a GPU worker group scaled from 0. The
    autoscaler starts a worker when a trial is pending, so the search must not refuse to start."""
    from hpsearch.raysetup import ClusterView, NodeGroup, check_cluster

    head_only = [("head", {"CPU": 0.0, "memory": 8e9})]
    gpu_group = NodeGroup("gpu-workers", {"CPU": 8.0, "GPU": 1.0}, max_count=4)
    check_cluster(gpu_spec(0.25), "s3://bucket/searches", ClusterView(head_only, [gpu_group]))
    with pytest.raises(HpsearchError, match="no node of this cluster has that: no trial|no trial could ever start"):
        check_cluster(gpu_spec(0.25), "s3://bucket/searches", ClusterView(head_only, []))
    with pytest.raises(HpsearchError, match="its autoscaler can add none"):
        check_cluster(gpu_spec(1.0, cpu=16), "s3://bucket/searches", ClusterView(head_only, [gpu_group]))
    # the machines it will add must see the storage too
    with pytest.raises(
        HpsearchError, match="--storage: '/tmp/x' is a local folder, but the cluster spans machines its autoscaler adds"
    ):
        check_cluster(gpu_spec(0.25), "/tmp/x", ClusterView(head_only, [gpu_group]))


def test_a_local_cluster_gives_each_node_gpus_of_its_own(monkeypatch):
    from hpsearch import cluster

    assert cluster.gpu_slices(3, 2, ["0", "1", "2", "3", "4", "5", "6"]) == ["0,1", "2,3", "4,5"]
    assert cluster.gpu_slices(2, 0, []) == [None, None]
    with pytest.raises(
        HpsearchError, match=r"--num-gpus: 3 node\(s\) x 1 GPU\(s\) need 3 GPUs, but this machine shows 2"
    ):
        cluster.gpu_slices(3, 1, ["0", "1"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert cluster.local_gpus() == ["2", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: no GPUs
    assert cluster.local_gpus() == []


def test_node_groups_declared_by_the_cluster_are_read(monkeypatch):
    from hpsearch.raysetup import NodeGroup, parse_node_groups

    assert parse_node_groups("gpu-workers:CPU=8,GPU=1; cpu:CPU=2") == [
        NodeGroup("gpu-workers", {"CPU": 8.0, "GPU": 1.0}, -1),
        NodeGroup("cpu", {"CPU": 2.0}, -1),
    ]
    assert parse_node_groups("") == []
    with pytest.raises(HpsearchError, match="HPSEARCH_NODE_GROUPS: cannot read 'gpu-workers:CPU=lots'"):
        parse_node_groups("gpu-workers:CPU=lots")


def test_submit_waits_while_the_clusters_job_agent_is_starting():
    """Right after `ray start --head` the Jobs API answers 500 "No available agent" for a few seconds."""
    from hpsearch.jobs import submit_when_ready

    answers = [
        RuntimeError("Request failed with status code 500: No available agent to submit job, please try again later.")
    ] * 3
    slept = []

    def submit_job():
        if answers:
            raise answers.pop()
        return "job-1"

    assert submit_when_ready(submit_job, sleep=slept.append) == "job-1" and len(slept) == 3
    with pytest.raises(HpsearchError, match="No available agent"):  # not forever
        submit_when_ready(
            lambda: (_ for _ in ()).throw(RuntimeError("500: No available agent to submit job")),
            wait_s=0,
            sleep=slept.append,
        )
    with pytest.raises(HpsearchError, match="bad entrypoint"):  # other errors at once
        submit_when_ready(lambda: (_ for _ in ()).throw(RuntimeError("bad entrypoint")), sleep=slept.append)
    assert len(slept) == 3


def test_submit_checks_the_clusters_hpsearch_and_password_first(monkeypatch):
    from hpsearch import __version__, jobs
    from hpsearch.errors import HpsearchError

    for name in ("HPSEARCH_TRACKING_PASSWORD", "HPSEARCH_TRACKING_PASSWORD_FILE", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    logs = f"noise\nhpsearch-check {__version__} 0 0\n"
    found = jobs.parse_check(logs)
    assert found == jobs.ClusterPython(__version__, False, False)
    jobs.check_cluster_python(found, "sqlite:////tmp/m.db")  # nothing needed
    with pytest.raises(HpsearchError, match=r"cluster runs hpsearch 0\.0\.1, this is hpsearch .*install hpsearch"):
        jobs.check_cluster_python(jobs.ClusterPython("0.0.1", True, True), "sqlite:////tmp/m.db")
    with pytest.raises(HpsearchError) as err:
        jobs.check_cluster_python(found, "postgresql://hp:canary-pw@db/m")
    assert "HPSEARCH_TRACKING_PASSWORD" in str(err.value) and "canary-pw" not in str(err.value)
    assert (
        jobs.check_cluster_python(jobs.ClusterPython(__version__, True, False), "postgresql://hp:canary-pw@db/m") == []
    )
    # MLflow's own credentials here: the server may not need them on the cluster, so a warning only
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-here")
    (warning,) = jobs.check_cluster_python(found, "http://mlflow:5000")
    assert "MLFLOW_TRACKING_USERNAME/PASSWORD" in warning and "pw-here" not in warning
    monkeypatch.setenv("HPSEARCH_TRACKING_PASSWORD", "pw-here")  # no user in the URI: not its password
    assert jobs.check_cluster_python(found, "sqlite:////tmp/m.db") == []
    assert jobs.parse_check("Traceback ...\nModuleNotFoundError: No module named 'hpsearch'\n") is None


class FakeJobs:
    """What `cluster_python` uses of Ray's JobSubmissionClient, answering as a cluster without hpsearch."""

    def __init__(self, logs):
        self.logs, self.submitted, self.deleted = logs, [], []

    def submit_job(self, entrypoint, submission_id, metadata):
        self.submitted.append((entrypoint, submission_id, metadata))
        return submission_id

    def get_job_status(self, job_id):
        return "FAILED"

    def get_job_logs(self, job_id):
        return self.logs

    def delete_job(self, job_id):
        self.deleted.append(job_id)


def test_a_cluster_whose_python_lacks_hpsearch_is_told_in_one_line():
    from hpsearch import jobs
    from hpsearch.errors import HpsearchError

    fake = FakeJobs("Traceback (most recent call last):\nModuleNotFoundError: No module named 'hpsearch'\n")
    with pytest.raises(HpsearchError) as err:
        jobs.cluster_python(fake, sleep=lambda s: None)
    message = str(err.value)
    assert "No module named 'hpsearch'" in message and "nothing was submitted" in message and "\n" not in message
    ((entrypoint, job_id, metadata),) = fake.submitted
    assert entrypoint.startswith("python -c ") and job_id.startswith("hpsearch-check-") and "hpsearch" not in metadata
    assert fake.deleted == [job_id]  # the check leaves no job behind


def test_a_job_takes_the_users_trainable_loader_and_plugins_with_it(tmp_path, quickstart_data):
    from hpsearch.jobs import own_code_modules
    from hpsearch.spec import parse_spec
    from tests.helpers import ROOT

    assert own_code_modules(parse_spec(quickstart_data), ROOT) == []  # all built in
    (tmp_path / "teamdata.py").write_text("def load(root):\n    return None\n")
    (tmp_path / "teamnet").mkdir()
    (tmp_path / "teamnet" / "__init__.py").write_text("")
    (tmp_path / "teamnet" / "train.py").write_text("def fit(config, data, epochs, report, seed=0):\n    pass\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        quickstart_data.update(
            trainable="teamnet.train:fit",
            data={"loader": "teamdata:load", "args": {"root": "x"}},
            plugins=["teamnet"],
            space={"lr": {"float": [0.1, 1.0]}},
        )
        spec = parse_spec(quickstart_data)
    finally:
        sys.path.remove(str(tmp_path))
    assert own_code_modules(spec, tmp_path) == [str(tmp_path / "teamdata.py"), str(tmp_path / "teamnet")]
