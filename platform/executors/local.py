"""Run training jobs as local processes: the built executable of the requested workflow.

Each job gets its own working directory, JOBS_DIR/<job_id>/, holding request.json, the
combined stdout+stderr in output.log, result.json (the workflow's summary, written only on
success) and exit_code (written by a small shell wrapper when the process ends). The process
runs in its own session, so it outlives a killed service, and the executor re-attaches
through its `ref` (the working directory) on restart. The wrapper enforces the time limit
with coreutils' timeout, so the limit holds even while no service is watching.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import signal
import subprocess
import time

from google.protobuf import json_format

from roundhouse.platform.api import job_pb2, training_pb2
from roundhouse.platform.executors.status import ExecutionStatus

Job = job_pb2.Job
TIMEOUT_EXIT = 124  # coreutils timeout's exit code when the limit was hit

_WRAPPER = ('timeout -k 10 "$@" > output.log 2>&1; '
            'echo $? > exit_code.tmp; mv exit_code.tmp exit_code')




class UnknownWorkflow(ValueError):
    pass


class LocalExecutor:
    name = "local"

    def __init__(self, workflows: dict[str, str], jobs_dir: str | os.PathLike, store_url: str,
                 time_limit_seconds: int = 6 * 3600):
        """workflows: name -> command line of its train executable (e.g. "python3 -S x.par")."""
        self.workflows = {name: shlex.split(cmd) for name, cmd in workflows.items()}
        self.jobs_dir = pathlib.Path(jobs_dir)
        self.store_url = store_url
        self.time_limit = int(time_limit_seconds)

    def submit(self, job_id: str, request: training_pb2.TrainingRequest) -> str:
        return self.start(job_id, request.workflow, {"request.json": json_format.MessageToJson(request)},
                          ["--request", "request.json", "--job-id", job_id])

    def start(self, job_id: str, workflow: str, inputs: dict[str, str], args: list[str]) -> str:
        """Run `workflow`'s executable with `args` (and --result, --store, --home) in the
        job's folder, after writing `inputs` (file name -> text) there; returns the ref."""
        if workflow not in self.workflows:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise UnknownWorkflow(f"workflow {workflow!r} has no executable here (known: {known})")
        workdir = self.jobs_dir / job_id
        workdir.mkdir(parents=True, exist_ok=True)
        if self._alive(workdir):
            # A service killed between starting this job's process and recording it: the
            # process still runs, so take it back instead of starting a second one in its folder.
            return str(workdir)
        for stale in ("exit_code", "result.json", "output.log"):  # a re-run starts clean
            (workdir / stale).unlink(missing_ok=True)
        for name, text in inputs.items():
            (workdir / name).write_text(text)
        command = self.workflows[workflow] + [
            *args, "--result", "result.json", "--store", self.store_url, "--home", str(workdir)]
        proc = subprocess.Popen(["/bin/sh", "-c", _WRAPPER, "sh", str(self.time_limit), *command],
                                cwd=workdir, stdin=subprocess.DEVNULL, start_new_session=True)
        (workdir / "pid").write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
        return str(workdir)

    def status(self, ref: str) -> ExecutionStatus:
        workdir = pathlib.Path(ref)
        exit_file = workdir / "exit_code"
        if exit_file.exists():
            code = int(exit_file.read_text().strip() or -1)
            if code == 0:
                return ExecutionStatus(Job.SUCCEEDED)
            if code == TIMEOUT_EXIT:
                return ExecutionStatus(Job.FAILED, f"ran longer than the time limit of {self.time_limit}s")
            tail = self.logs(ref).strip().splitlines()[-1:] or [""]
            return ExecutionStatus(Job.FAILED, f"the workflow exited with code {code}; last output: {tail[0]}")
        if self._alive(workdir):
            return ExecutionStatus(Job.RUNNING)
        return ExecutionStatus(Job.FAILED, "the training process vanished without an exit code", lost=True)

    def logs(self, ref: str) -> str:
        try:
            return (pathlib.Path(ref) / "output.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cancel(self, ref: str, grace_seconds: float = 10.0) -> None:
        pid = self._pid(pathlib.Path(ref))
        if pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace_seconds
            while time.monotonic() < deadline and self._alive(pathlib.Path(ref)):
                time.sleep(0.05)
            if not self._alive(pathlib.Path(ref)):
                return

    def _pid(self, workdir):
        """The wrapper's pid, if that process still is the one we started (pids get reused)."""
        try:
            pid, started = (workdir / "pid").read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        return int(pid) if _start_time(int(pid)) == started else None

    def _alive(self, workdir) -> bool:
        pid = self._pid(workdir)
        if pid is None:
            return False
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has ended
        except ChildProcessError:
            pass
        return _start_time(pid) is not None and _state(pid) != "Z"


def _stat(pid):
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()  # fields after "(comm)"


def _start_time(pid):
    fields = _stat(pid)
    return None if fields is None else fields[19]  # starttime, in clock ticks since boot


def _state(pid):
    fields = _stat(pid)
    return None if fields is None else fields[0]
