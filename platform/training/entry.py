"""The command line every workflow binary shares: one training request in, one model out.

    train --request REQUEST.json [--store URL] [--result FILE] [--job-id ID]
    ROUNDHOUSE_REQUEST='{...}' train --job-id ID   # as a Kubernetes Job runs the image
    train [workflow flags]                         # the workflow builds its default request
    train --evaluate EVALUATION.json [--store URL] [--result FILE]
                                                   # evaluate stored models (platform/evaluation)

Both forms run the same path, request -> runner -> model store, whether a person starts the
binary with `bazel run`, or the training service's local executor (or a Kubernetes Job)
starts it for a job. The last line on stdout is the JSON summary; --result also writes it
to a file, atomically, so an executor can tell a finished run from a dead one. A Kubernetes
Job also sets $ROUNDHOUSE_IMAGE, the image it runs by digest, which goes in the model record.

With --evaluate, the binary evaluates stored models instead of training one (the training
service runs evaluations this way, so that the workflow's own `evaluate` adds its metrics
and slices): the last line on stdout is {"evaluation": result} (platform/evaluation).
"""

import argparse
import json
import os
import pathlib
import sys
from typing import Callable

from roundhouse.platform import build_info, files
from roundhouse.platform.home import default_home
from roundhouse.platform.api import training_pb2, validate
from roundhouse.platform.data.sources import DataError
from roundhouse.platform.evaluation import runner as evaluation_runner
from roundhouse.platform.evaluation import spec as evaluation_spec
from roundhouse.platform.evaluation import summary as evaluation_summary
from roundhouse.platform.evaluation.evaluate import EvaluationError
from roundhouse.platform.evaluation.models import ModelError
from roundhouse.platform.registry import store as store_lib
from roundhouse.platform.training import runner
from roundhouse.platform.training.workflow import Workflow


def main(workflow: Workflow, bazel_target: str,
         default_request: Callable[[argparse.Namespace, pathlib.Path], training_pb2.TrainingRequest],
         add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
         argv=None, description: str = "") -> int:
    parser = argparse.ArgumentParser(description=description or f"train the {workflow.name} workflow")
    parser.add_argument("--request", type=pathlib.Path, help="a TrainingRequest as JSON")
    parser.add_argument("--home", type=pathlib.Path, default=None,
                        help="data and model root (default $ROUNDHOUSE_HOME or ~/.roundhouse)")
    parser.add_argument("--store", default=os.environ.get("ROUNDHOUSE_STORE"),
                        help="model store: a directory or s3://bucket/prefix (default HOME)")
    parser.add_argument("--params", default="{}", help="JSON object overriding the workflow's params")
    parser.add_argument("--result", type=pathlib.Path, help="also write the JSON summary here")
    parser.add_argument("--job-id", default=os.environ.get("ROUNDHOUSE_JOB_ID", ""),
                        help="the training job this run belongs to (kept in the model record)")
    parser.add_argument("--evaluate", type=pathlib.Path, metavar="EVALUATION.json",
                        help="evaluate the stored models an evaluation request names, instead of training")
    add_arguments(parser)
    args = parser.parse_args(argv)
    home = args.home or default_home()
    if args.evaluate:
        if args.request:
            parser.error("--evaluate and --request: pass one of them")
        return _evaluate(parser, args, workflow, home)
    try:
        params = json.loads(args.params)
        if not isinstance(params, dict):
            raise ValueError("not an object")
    except ValueError as e:
        parser.error(f"--params must be a JSON object: {e}")

    source, text = None, None
    if args.request:
        source = str(args.request)
        try:
            text = args.request.read_text()
        except OSError as e:
            parser.error(f"--request: {e}")
    elif os.environ.get("ROUNDHOUSE_REQUEST"):
        source, text = "$ROUNDHOUSE_REQUEST", os.environ["ROUNDHOUSE_REQUEST"]
    if text is not None:
        try:
            request = validate.parse_request(text)
        except validate.RequestError as e:
            parser.error(f"{source}: {e}")
        if request.workflow != workflow.name:
            parser.error(f"{source}: workflow: this binary trains {workflow.name!r}, "
                         f"the request asks for {request.workflow!r}")
    else:
        request = default_request(args, home)
    request.params.update(params)
    try:  # the same checks the service applies at its door
        validate.check_request(request)
    except validate.RequestError as e:
        parser.error(str(e))

    try:
        stored = runner.run(request, workflow, store_lib.open_store(args.store or str(home)),
                            build_info.current(), bazel_target, job_id=args.job_id,
                            image=os.environ.get("ROUNDHOUSE_IMAGE", ""))
    except (runner.InputError, DataError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    summary = json.dumps(runner.summary(stored))
    if args.result:
        files.write_atomically(args.result, lambda tmp: pathlib.Path(tmp).write_text(summary + "\n"))
    print(summary, flush=True)
    return 0


def _evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace, workflow: Workflow,
              home: pathlib.Path) -> int:
    try:
        spec = evaluation_spec.parse(args.evaluate.read_bytes())
    except OSError as e:
        parser.error(f"--evaluate: {e}")
    except validate.RequestError as e:
        parser.error(f"{args.evaluate}: {e}")
    try:
        result = evaluation_runner.run(spec, store_lib.open_store(args.store or str(home)), workflow)
    except (EvaluationError, ModelError, DataError, store_lib.ModelNotFound) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    line = evaluation_summary.line(result.to_dict())
    if args.result:
        files.write_atomically(args.result, lambda tmp: pathlib.Path(tmp).write_text(line + "\n"))
    print(line, flush=True)
    return 0
