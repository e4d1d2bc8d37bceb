"""`bazel run //platform/training:tokens -- COMMAND`: create, list and revoke team tokens.

  create --team TEAM [--admin] [--name TEXT]   a new token, printed once on stdout (only its
                                               hash is stored); its ID goes to stderr
  list [--active]                              ID, team, admin, created, revoked, name
  revoke TOKEN_ID                              for good: the token gets 401 from then on

It works on the job store's database, the one the service's --jobs names (same default:
$ROUNDHOUSE_HOME/jobs.sqlite; or postgresql://...): whoever can open that database
administers the service. Over HTTP, only an admin token may do the same (/v1/tokens).
"""

import argparse
import datetime as dt
import os
import sys

from roundhouse.platform.auth.sql_tokens import open_token_store
from roundhouse.platform.auth.tokens import TokenError
from roundhouse.platform.home import default_home


def _when(seconds):
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv=None, out=sys.stdout, err=sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="tokens", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--jobs", default=str(default_home() / "jobs.sqlite"),
                        help="the job store's database: a SQLite path or postgresql://...")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create")
    p.add_argument("--team", required=True)
    p.add_argument("--admin", action="store_true", help="may act for every team and manage tokens")
    p.add_argument("--name", default="", help="what the token is for (shown by list)")
    sub.add_parser("list").add_argument("--active", action="store_true", help="leave out revoked tokens")
    sub.add_parser("revoke").add_argument("token_id")
    args = parser.parse_args(argv)
    # A relative --jobs is meant from where the user ran `bazel run`, not from its runfiles.
    if os.environ.get("BUILD_WORKING_DIRECTORY"):
        os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])

    try:
        with open_token_store(args.jobs) as store:
            if args.command == "create":
                record, token = store.create(args.team, admin=args.admin, name=args.name)
                print(token, file=out)
                print(f"token {record.id} for team {record.team}{' (admin)' if record.admin else ''}: "
                      "shown once, keep it now", file=err)
            elif args.command == "list":
                print(f"{'ID':<12}  {'TEAM':<16}  {'ADMIN':<5}  {'CREATED':<20}  {'REVOKED':<20}  NAME", file=out)
                for t in store.list(include_revoked=not args.active):
                    print(f"{t.id:<12}  {t.team:<16}  {'yes' if t.admin else 'no':<5}  {_when(t.created_at):<20}  "
                          f"{_when(t.revoked_at):<20}  {t.name}", file=out)
            elif args.command == "revoke":
                record = store.revoke(args.token_id)
                print(f"token {record.id} (team {record.team}) revoked at {_when(record.revoked_at)}", file=out)
    except TokenError as e:
        print(f"tokens: error: {e}", file=err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
