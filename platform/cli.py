"""`bazel run //platform:cli -- COMMAND ...`: submit and follow training jobs, manage models.

Jobs and tags go through the training service (--server, default $ROUNDHOUSE_SERVER or
http://127.0.0.1:8080) with a team token (--token, default $ROUNDHOUSE_TOKEN or the file
~/.roundhouse/token a local server writes); a team moves only its own tags. Models are read
from the model store directly (--store, default $ROUNDHOUSE_STORE or ~/.roundhouse).

  submit FILE [--watch | --wait]
                            a TrainingRequest in JSON or YAML -> job ID; --watch follows its
                            progress and logs, --wait waits quietly (for schedulers); both print
                            the result and exit 1 when the job fails or is cancelled
  watch JOB                 progress and logs until the job ends, then its result
  status JOB | result JOB | logs JOB | cancel JOB
  jobs [--owner O] [--workflow W] [--state S] [--team T]
  models | model ID | tags | tag TAG ID | untag TAG | rollback TAG | history TAG
  meta-model FILE           a meta-model spec in JSON or YAML (threshold, dispatch,
                            combination; see platform/registry/meta_models.py) -> its model ID
  evaluate FILE [--wait]    an evaluation request in JSON or YAML (models by ID or tag, data,
                            holdout; see platform/evaluation/spec.py) -> evaluation ID; --wait
                            waits, prints the result (a table on stderr, JSON on stdout) and
                            exits 1 when the evaluation fails or is cancelled
  evaluation ID             one evaluation: state, spec, result
  evaluations [--owner O] [--team T] [--state S]
  schedule FILE [--run]     a retraining schedule in JSON or YAML (tag, cron, template, window,
                            gate; see platform/schedules/spec.py) -> its ID; --run starts a run now
  schedules                 the team's schedules: ID, tag, cron, next slot
  runs SCHEDULE_ID [--run]  a schedule's runs, newest first: state, decision, models, reason
                            (--run starts one now first)
  tune FILE [--wait]        a hyperparameter search in JSON or YAML (a training request as
                            template, space, metric, direction, budget, parallelism; see
                            platform/tuning/space.py) -> search ID; --wait waits, prints the
                            trials (a table on stderr) and the search (JSON on stdout) and
                            exits 1 when the search fails or is cancelled
  tuning [ID]               one search (its trials, the best and its model), or every search
"""

import argparse
import json
import os
import pathlib
import sys
import time

import yaml

from roundhouse.platform.registry import meta_models, store as store_lib
from roundhouse.platform.registry import tags as tags_lib
from roundhouse.platform.home import default_home
from roundhouse.platform.training.client import (TERMINAL, JobFailed, Retry, ServiceError,
                                                 TrainingClient, Unreachable)


class CliError(Exception):
    pass


def load_spec(path: pathlib.Path):
    """A JSON or YAML file's value, by its suffix."""
    try:
        text = path.read_text()
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None
    try:
        body = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        raise CliError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {e}") from None
    return body


def load_request(path: pathlib.Path) -> dict:
    body = load_spec(path)
    # Local paths may be written relative to the home folder; the service needs them whole.
    parquet = (body.get("data") or {}).get("parquet") if isinstance(body, dict) else None
    if isinstance(parquet, dict) and isinstance(parquet.get("uri"), str) and "://" not in parquet["uri"]:
        parquet["uri"] = os.path.abspath(os.path.expanduser(os.path.expandvars(parquet["uri"])))
    return body


def _absolute_paths(body: dict) -> dict:
    parquet = (body.get("data") or {}).get("parquet")
    if isinstance(parquet, dict) and isinstance(parquet.get("uri"), str) and "://" not in parquet["uri"]:
        parquet["uri"] = os.path.abspath(os.path.expanduser(os.path.expandvars(parquet["uri"])))
    return body


def watch(client: TrainingClient, job_id: str, out=sys.stdout, poll: float = 0.5) -> dict:
    position, last_state, started = 0, None, time.monotonic()
    while True:
        job = client.status(job_id)
        text, position = client.logs(job_id, position)
        for line in text.splitlines():
            print(f"  | {line}", file=out)
        state = job["state"]
        if state != last_state:
            print(f"[{time.monotonic() - started:6.1f}s] job {job_id}: {state.lower()}"
                  + (f" ({job['reason']})" if job.get("reason") else ""), file=out, flush=True)
            last_state = state
        if state in TERMINAL:
            return job
        time.sleep(poll)


def finish(client: TrainingClient, job: dict, show) -> int:
    """Show a finished job's result; the exit code says whether it succeeded."""
    if job["state"] != "SUCCEEDED":
        print(f"roundhouse: error: {JobFailed(job)}", file=sys.stderr)
        return 1
    show(client.result(job["id"]))
    return 0


def show_trials(search: dict, out=sys.stderr) -> None:
    """A search's trials as a table, the best one marked."""
    best = (search.get("best") or {}).get("number")
    for t in search.get("trials", []):
        value = "-" if t.get("value") is None else f"{t['value']:.4f}"
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(t["params"].items()))
        print(f"{'*' if t['number'] == best else ' '} {t['number']:3}  {t['state'].lower():8}  "
              f"{search.get('metric', '')}={value}  {params}  {t.get('model_id', '')}  {t.get('reason', '')}",
              file=out)


def show_evaluation(result: dict, out=sys.stderr) -> None:
    """An evaluation's result as a table: each model's metrics with their intervals, then each
    difference with its interval and the share of resamples where it is above 0."""
    metrics = ("roc_auc", "pr_auc", "recall_at_1pct_fpr")
    names = {m["model_id"]: m["ref"] if m["ref"] == m["model_id"] else f"{m['ref']} ({m['model_id']})"
             for m in result["models"]}
    width = max(len(n) for n in names.values()) + 2
    boot = result["bootstrap"]
    print(f"{result['rows']:,} rows, {result['positives']:,} positives; {boot['resamples']} bootstrap "
          f"resamples (seed {boot['seed']}), {boot['confidence']:.0%} intervals", file=out)
    print("model".ljust(width) + "".join(m.ljust(28) for m in metrics), file=out)
    for m in result["models"]:
        cells = [m["metrics"][k] for k in metrics]
        print(names[m["model_id"]].ljust(width) + "".join(
            f"{c['value']:.4f} [{c['low']:.4f}, {c['high']:.4f}]".ljust(28) for c in cells), file=out)
    for d in result["differences"]:
        print(f"{d['metric']}: {names[d['model']]} - {names[d['baseline']]} = {d['value']:+.4f} "
              f"[{d['low']:+.4f}, {d['high']:+.4f}], above 0 in {d['share_positive']:.1%} of resamples",
              file=out)
    for m in result["models"]:
        if m.get("workflow_metrics"):
            print(f"{names[m['model_id']]}: " + ", ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in m["workflow_metrics"].items()),
                file=out)
    out.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="roundhouse", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[5:]))
    parser.add_argument("--server", default=os.environ.get("ROUNDHOUSE_SERVER", "http://127.0.0.1:8080"))
    parser.add_argument("--store", default=os.environ.get("ROUNDHOUSE_STORE", str(default_home())))
    parser.add_argument("--token", default=None,
                        help="team token (default $ROUNDHOUSE_TOKEN, else ~/.roundhouse/token)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit")
    p.add_argument("file", type=pathlib.Path)
    follow = p.add_mutually_exclusive_group()
    follow.add_argument("--watch", action="store_true")
    follow.add_argument("--wait", action="store_true")
    for name in ("watch", "status", "result", "logs", "cancel"):
        sub.add_parser(name).add_argument("job_id")
    p = sub.add_parser("jobs")
    for flag in ("--owner", "--workflow", "--state", "--team"):
        p.add_argument(flag, default="")
    sub.add_parser("models")
    sub.add_parser("model").add_argument("model_id")
    sub.add_parser("tags")
    p = sub.add_parser("tag")
    p.add_argument("tag")
    p.add_argument("model_id")
    for name in ("untag", "rollback", "history"):
        sub.add_parser(name).add_argument("tag")
    sub.add_parser("meta-model").add_argument("file", type=pathlib.Path)
    p = sub.add_parser("evaluate")
    p.add_argument("file", type=pathlib.Path)
    p.add_argument("--wait", action="store_true")
    sub.add_parser("evaluation").add_argument("evaluation_id")
    p = sub.add_parser("evaluations")
    for flag in ("--owner", "--team", "--state"):
        p.add_argument(flag, default="")
    p = sub.add_parser("tune")
    p.add_argument("file", type=pathlib.Path)
    p.add_argument("--wait", action="store_true")
    sub.add_parser("tuning").add_argument("search_id", nargs="?")
    p = sub.add_parser("schedule")
    p.add_argument("file", type=pathlib.Path)
    p.add_argument("--run", action="store_true")
    sub.add_parser("schedules")
    p = sub.add_parser("runs")
    p.add_argument("schedule_id")
    p.add_argument("--run", action="store_true")
    args = parser.parse_args(argv)

    # Relative paths are meant from where the user ran `bazel run`, not from its runfiles.
    if os.environ.get("BUILD_WORKING_DIRECTORY"):
        os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])
    # A few seconds of retries: enough for a restarting service, short for a person at a prompt.
    client = TrainingClient(args.server, token=args.token, retry=Retry(attempts=4))
    user = os.environ.get("USER", "")
    show = lambda value: print(json.dumps(value, indent=2, sort_keys=True))  # noqa: E731
    try:
        if args.command == "submit":
            job_id = client.submit(load_request(args.file))
            print(job_id, flush=True)
            if args.watch:
                return finish(client, watch(client, job_id), show)
            if args.wait:
                return finish(client, client.wait(job_id), show)
        elif args.command == "watch":
            return finish(client, watch(client, args.job_id), show)
        elif args.command == "status":
            show(client.status(args.job_id))
        elif args.command == "result":
            show(client.result(args.job_id))
        elif args.command == "logs":
            print(client.logs(args.job_id)[0], end="")
        elif args.command == "cancel":
            print(client.cancel(args.job_id)["state"].lower())
        elif args.command == "jobs":
            for job in client.jobs(owner=args.owner, workflow=args.workflow, state=args.state, team=args.team):
                team = job.get("request", {}).get("metadata", {}).get("team", "")
                print(f"{job['id']}  {job['state'].lower():9}  {job.get('workflow', '')}  {job.get('owner', '')}"
                      f"  {team}  {job.get('reason', '')}")
        elif args.command == "evaluate":
            evaluation_id = client.evaluate(load_request(args.file))
            print(evaluation_id, flush=True)
            if args.wait:
                evaluation = client.wait_evaluation(evaluation_id)
                if evaluation["state"] != "SUCCEEDED":
                    print(f"roundhouse: error: evaluation {evaluation_id} {evaluation['state'].lower()}"
                          + (f": {evaluation['reason']}" if evaluation.get("reason") else ""), file=sys.stderr)
                    return 1
                show_evaluation(evaluation["result"])
                show(evaluation["result"])
        elif args.command == "evaluation":
            show(client.evaluation(args.evaluation_id))
        elif args.command == "evaluations":
            for e in client.evaluations(owner=args.owner, team=args.team, state=args.state):
                refs = " ".join(m["ref"] for m in e.get("models", []))
                print(f"{e['id']}  {e['state'].lower():9}  {e.get('workflow', '')}  {e.get('owner', '')}"
                      f"  {e.get('team', '')}  {refs}  {e.get('reason', '')}")
        elif args.command == "tune":
            search_id = client.tune(load_request(args.file))
            print(search_id, flush=True)
            if args.wait:
                found = client.wait_search(search_id)
                show_trials(found)
                if found["state"] != "SUCCEEDED":
                    print(f"roundhouse: error: search {search_id} {found['state'].lower()}"
                          + (f": {found['reason']}" if found.get("reason") else ""), file=sys.stderr)
                    return 1
                show(found)
        elif args.command == "tuning":
            if args.search_id:
                show(client.search(args.search_id))
            else:
                for s in client.searches():
                    best = s.get("best") or {}
                    done = sum((s.get("trial_counts") or {}).get(k, 0) for k in ("complete", "fail"))
                    print(f"{s['id']}  {s['state'].lower():9}  {s.get('owner', '')}  {s.get('team', '')}  "
                          f"{done}/{s['budget']}  {s['metric']}={best.get('value', '-')}  "
                          f"{best.get('model_id', '')}  {s.get('reason', '')}")
        elif args.command == "schedule":
            body = load_spec(args.file)
            if isinstance(body, dict) and isinstance(body.get("template"), dict):
                _absolute_paths(body["template"])  # relative local paths, made whole as a request's
            schedule = client.create_schedule(body)
            print(schedule["id"], flush=True)
            if args.run:
                print(client.run_schedule(schedule["id"])["id"], flush=True)
        elif args.command == "schedules":
            for s in client.schedules():
                print(f"{s['id']}  {s['tag']}  {s['cron']!r}  next {s['next_slot']}  {s['team']}  "
                      f"{s['gate']['metric']} +{s['gate']['min_improvement']:g}")
        elif args.command == "runs":
            if args.run:
                client.run_schedule(args.schedule_id)
            for r in client.schedule_runs(args.schedule_id):
                print(f"{r['id']}  {r['at']}  {r['kind']:6}  {r['state'].lower():10}  {r['decision'] or '-':8}  "
                      f"{r['champion_id'] or '-'} -> {r['challenger_id'] or '-'}  {r['reason']}")
        elif args.command == "tags":
            for t in client.tags():
                print(f"{t['tag']}  {t['model_id']}  {t['team']}")
        elif args.command == "tag":
            print(f"{args.tag} -> {client.tag(args.tag, args.model_id, by=user)['model_id']}")
        elif args.command == "untag":
            client.untag(args.tag, by=user)
            print(f"{args.tag} untagged")
        elif args.command == "rollback":
            print(f"{args.tag} -> {client.rollback(args.tag, by=user)['model_id']}")
        elif args.command == "history":
            for e in client.tag_history(args.tag):
                print(f"{e['at']}  {e['model_id'] or '(untagged)'}  {e['by']}  {e['team']}")
        else:
            models = store_lib.open_store(args.store)
            tags = tags_lib.TagStore(models)
            if args.command == "models":
                by_model = {}
                for tag, mid in tags.list().items():
                    by_model.setdefault(mid, []).append(tag)
                for mid in models.list():
                    r = models.get(mid)
                    auc = r.metrics.get("roc_auc")
                    print(f"{mid}  {r.bazel_target}  git {r.git_sha[:12] or 'unstamped'}"
                          f"{' (dirty)' if r.git_dirty else ''}  roc_auc={auc:.4f}  {' '.join(by_model.get(mid, []))}")
            elif args.command == "model":
                from google.protobuf import json_format
                show(json_format.MessageToDict(models.get(args.model_id)))
            elif args.command == "meta-model":
                record = meta_models.create(models, load_spec(args.file))
                print(record.model_id)
    except Unreachable as e:
        print(f"roundhouse: error: {e} (start it with `bazel run //platform/training:server`, "
              "or pass --server)", file=sys.stderr)
        return 1
    except ServiceError as e:
        hint = (" (pass --token, set $ROUNDHOUSE_TOKEN, or use the token a local server wrote to "
                f"{default_home() / 'token'}; `bazel run //platform/training:tokens -- create --team T` "
                "makes one)") if e.status == 401 else ""
        print(f"roundhouse: error: {e}{hint}", file=sys.stderr)
        return 1
    except (CliError, store_lib.ModelNotFound, tags_lib.TagError, meta_models.SpecError) as e:
        print(f"roundhouse: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
