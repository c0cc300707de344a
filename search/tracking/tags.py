"""Every name hpsearch writes into MLflow tags and Ray job metadata, in one place (README, "MLflow layout").

The names are a contract: reports, ``hpsearch resume``, ``hpsearch retrain`` and users' own queries
(``tags.`hpsearch.role` = 'trial'``) rely on them.
"""

from __future__ import annotations

from typing import Literal

# Run tags ---------------------------------------------------------------------------------
PARENT = "mlflow.parentRunId"  # MLflow's own: a trial's (or a retrain's) search run
ROLE = "hpsearch.role"  # search | trial | retrain
STATE = "hpsearch.trial_state"  # a TrialState, or "running"
CONFIG = "hpsearch.config"  # the config exactly as sampled (JSON); params hold it as trained
TRIAL = "hpsearch.trial"  # the short trial name, t001
TRIAL_ID = "hpsearch.trial_id"  # Tune's trial id: how a resumed search finds its runs
EPOCHS = "hpsearch.epochs"
ERROR = "hpsearch.error"
RESTARTS = "hpsearch.restarts"  # times the trial was restarted from its last checkpoint (node lost, retries)
RESTART_CAUSE = "hpsearch.restart_cause"  # why, the last time
# PBT (search.scheduler.type: pbt): each exploit is a segment run under the trial's run
SEGMENT_ID = "hpsearch.segment_id"  # a segment run: TRIALID#N (its trial's Tune id; how a replayed write finds it)
SEGMENT = "hpsearch.pbt.segment"  # 2, 3, ...: the trial's segments (the first is the trial's own params)
DONOR = "hpsearch.pbt.donor"  # the trial whose checkpoint the segment continues from (t00k)
FROM_EPOCH = "hpsearch.pbt.from_epoch"  # the segment trains from the epoch after this one
CHANGED = "hpsearch.pbt.changed"  # JSON: the keys whose value the exploit changed, with the new values
SEGMENTS = "hpsearch.pbt.segments"  # on a trial's run: how many segments it has had
NODE_ID = "hpsearch.node_id"
DEVICE = "hpsearch.device"
OVERRIDES = "hpsearch.overrides"  # config keys a built-in trainable changed (SELU's set-up)
STATUS = "hpsearch.status"  # the search's: RUNNING | FINISHED | KILLED | FAILED
RUN_DIR = "hpsearch.run_dir"
BEST_TRIAL = "hpsearch.best_trial"
BEST_PREFIX = "best."  # best.<param>: the best trial's config on the search run
WARM_START = "hpsearch.warm_start"  # the experiment a search was warm-started from (warm_start.json: the details)
WARM_START_TRIALS = "hpsearch.warm_start_trials"  # how many of its trials seeded the study
RUNTIME_PREFIX = "hpsearch.runtime."  # hpsearch.runtime.<key>: how a trial used its device (gpu, amp, tf32, ...)
# retrain runs
SOURCE_TRIAL = "hpsearch.source_trial"
SOURCE_RUN_ID = "hpsearch.source_run_id"
RETRAINED_ON = "hpsearch.retrained_on"  # retrain run: the host and process that trained it
SEED = "hpsearch.seed"
BEST_MODEL = "hpsearch.best_model"
RETRAIN_BEST = "hpsearch.retrain_best"
NOT_TESTED = "hpsearch.not_tested"  # why a retrained model has no test metrics

Role = Literal["search", "trial", "retrain"]
TrialState = Literal["completed", "stopped_early", "diverged", "failed"]
TRIAL_STATES: tuple[TrialState, ...] = ("completed", "stopped_early", "diverged", "failed")

# Ray job metadata (hpsearch submit) -------------------------------------------------------
JOB_MARK = "hpsearch"  # "1" on every job hpsearch submitted
JOB_NAME = "hpsearch.name"
JOB_TRACKING_URI = "hpsearch.tracking_uri"
JOB_RUN_DIR = "hpsearch.run_dir"
JOB_RESUMES = "hpsearch.resumes"
