"""Run evaluations as local processes of the workflow binaries: `train --evaluate SPEC`.

The binary is the one built for the evaluation's workflow (the service's runfiles hold every
workflow's), so the workflow's own `evaluate` runs with the code that trained its models.
Processes are platform/executors/local's: one folder per evaluation (evaluation.json,
output.log, result.json, exit_code), their own session, a time limit, re-attached after a
restart. Evaluations run on the service's machine even when training jobs go to Kubernetes:
scoring a holdout is light next to training, and this executor has no Kubernetes path yet.
"""

from __future__ import annotations

import json

from roundhouse.platform.executors.local import LocalExecutor


class LocalEvaluationExecutor:
    name = "local"

    def __init__(self, local: LocalExecutor):
        self.local = local

    def submit(self, evaluation_id: str, spec: dict) -> str:
        return self.local.start(evaluation_id, spec.get("workflow", ""),
                                {"evaluation.json": json.dumps(spec, indent=1, sort_keys=True)},
                                ["--evaluate", "evaluation.json"])

    def status(self, ref: str):  # an executors.status.ExecutionStatus
        return self.local.status(ref)

    def logs(self, ref: str) -> str:
        return self.local.logs(ref)

    def cancel(self, ref: str) -> None:
        self.local.cancel(ref)
