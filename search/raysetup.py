"""Ray for a search: the Tune settings hpsearch runs with, joining or starting Ray, and checking that
the cluster can run the search at all (a trial that fits a node, storage every node can reach)."""

from __future__ import annotations

import logging
import os
from typing import Any

from hpsearch.errors import HpsearchError
from hpsearch.spec import JobSpec

# Tune settings (README, "How it runs"), applied by configure_tune() before Ray starts:
TUNE_ENV = {
    # trials stay in the driver's working directory (relative data paths keep working)
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    # experiment-state snapshots, what `hpsearch resume` continues from, every 5 s: trials that
    # finished in the last 5 s before a crash run again on resume
    "TUNE_GLOBAL_CHECKPOINT_S": "5",
    # Ray's console reporter: silent (verbose=0) only with the classic output engine; we print our own
    "RAY_AIR_NEW_OUTPUT": "0",
    # Tune's automatic per-trial JSON/CSV/TensorBoard loggers: MLflow already records every result
    # (BENCHMARKS.md: they cost the driver CPU and memory that the trials then lack)
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}


def configure_tune() -> None:
    """Set hpsearch's Tune defaults in this process's environment (a value the user set wins).

    Called before Ray starts: a local Ray's workers inherit the environment.
    """
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)


def snapshot_interval_s() -> float:
    """Seconds between Tune's experiment-state snapshots (what a resumed search continues from)."""
    return float(os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", TUNE_ENV["TUNE_GLOBAL_CHECKPOINT_S"]))


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = False) -> None:
    """Join the Ray cluster at ``address``, or start a fresh local Ray (``address=None``).

    Raises:
        HpsearchError: the cluster cannot be joined (the message says what to set for token auth).
    """
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = dict(log_to_driver=log_to_driver, logging_level=logging.WARNING)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            auth = os.environ.get("RAY_AUTH_MODE")
            hint = (
                "if the cluster uses token authentication (Ray 2.60's default), set RAY_AUTH_MODE=token and "
                "provide the token in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
                if auth != "token"
                else "check the address and that the token matches the cluster's"
            )
            raise HpsearchError(f"cannot join the Ray cluster at {address}: {exc}; {hint}") from exc
    else:
        # A local cluster of our own: Ray turns token auth on for it and says so; not news for the user.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # "local": always a fresh instance, never the cluster a `ray start` left on this machine.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)


def check_cluster(spec: JobSpec, storage: str) -> None:
    """Fail fast on what the cluster can never do: a trial bigger than any node, or a storage path
    that only one of several machines can see.

    Raises:
        HpsearchError: naming the resources or the storage path and what would work.
    """
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    need_cpu, need_gpu = spec.resources.cpu, spec.resources.gpu
    fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= need_cpu and n["Resources"].get("GPU", 0) >= need_gpu]
    if not fits:
        biggest = max(nodes, key=lambda n: (n["Resources"].get("GPU", 0), n["Resources"].get("CPU", 0)))
        raise HpsearchError(
            f"resources: each trial asks for cpu={need_cpu:g}, gpu={need_gpu:g}, but no node of this cluster has "
            f"that (the largest has cpu={biggest['Resources'].get('CPU', 0):g}, "
            f"gpu={biggest['Resources'].get('GPU', 0):g}): no trial could ever start"
        )
    hosts = {n.get("NodeManagerHostname") for n in nodes}
    if len(hosts) > 1 and "://" not in storage and not shared_filesystem(storage):
        raise HpsearchError(
            f"--storage: {storage!r} is a local folder, but the cluster spans {len(hosts)} machines: trials on other "
            "machines could not write their checkpoints there. Use a shared path (an NFS mount) or a URI "
            "such as s3://bucket/prefix"
        )


_SHARED_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "glusterfs", "beegfs", "9p")


def shared_filesystem(path: str, mounts: str = "/proc/mounts") -> bool:
    """Whether ``path`` lives on a network file system (by the longest matching mount point)."""
    target = os.path.realpath(path)
    while not os.path.exists(target):
        target = os.path.dirname(target)
    best, fstype = "", ""
    try:
        with open(mounts) as f:
            for line in f:
                _, mount, kind = line.split()[:3]
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, fstype = mount, kind
    except OSError:
        return False
    return fstype in _SHARED_FS or fstype.startswith("fuse.")
