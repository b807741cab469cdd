"""Resumable sweeps: a multirun job whose configuration already has a finished run in the
sweep's experiment is skipped, and that earlier run stands in for it in the sweep summary.

What counts as done: a run that ended FINISHED with outcome ``completed`` or ``diverged``
(a diverged run is a result: run again, it diverges again). Failed, interrupted (KILLED),
still-running and deleted runs do not count: their jobs run again. The configuration is
compared by `config_hash`, a SHA-256 of the resolved config without the keys that do not
change the result (IGNORED), recorded on every run as the tag ``nnbench.config_hash``.
The code is not part of the hash: after changing it, rerun with ``tracking.resume=false``.
"""

from __future__ import annotations

import copy
import hashlib
import json

from nnbench.tracking.run import OUTCOME_TAG

CONFIG_HASH_TAG = "nnbench.config_hash"
# On the new sweep's parent run, one tag per skipped job: nnbench.reused.<job num> = run id.
REUSED_PREFIX = "nnbench.reused."
DONE_OUTCOMES = ("completed", "diverged")
# Where a run is recorded, how it shows progress, where the dataset files are cached and
# whether they are fetched or checked: none of it changes the numbers.
IGNORED = (
    "tracking",
    "trainer.progress",
    "dataset.root",
    "dataset.download",
    "dataset.verify",
)


def config_hash(config: dict) -> str:
    """SHA-256 (hex) of the resolved config as canonical JSON, IGNORED keys left out."""
    kept = copy.deepcopy(config)
    for dotted in IGNORED:
        *path, last = dotted.split(".")
        node = kept
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def find_done(client, experiment_id: str, digest: str):
    """The newest run of the experiment with this config hash that is done, or None."""
    found = client.search_runs(
        [experiment_id],
        f"tags.`{CONFIG_HASH_TAG}` = '{digest}' AND attributes.status = 'FINISHED'",
        max_results=100,
        order_by=["attributes.start_time DESC"],
    )
    for run in found:
        if run.data.tags.get(OUTCOME_TAG) in DONE_OUTCOMES:
            return run
    return None


def reuse(client, parent: dict, digest: str, job_num: int):
    """The run that already did this job, recorded on the sweep's parent run so that its
    summary compares it with the others; None when the job must run."""
    run = find_done(client, parent["experiment_id"], digest)
    if run is not None:
        client.set_tag(parent["parent_run_id"], f"{REUSED_PREFIX}{job_num}", run.info.run_id)
    return run


def reused_runs(tags: dict) -> dict[int, str]:
    """{job num: run id} of the jobs a sweep skipped, from its parent run's tags."""
    found = {}
    for key, value in tags.items():
        if key.startswith(REUSED_PREFIX) and key[len(REUSED_PREFIX) :].isdigit():
            found[int(key[len(REUSED_PREFIX) :])] = value
    return dict(sorted(found.items()))
