"""The floor of //tools/bench:scoring: the scorer's HTTP stack, Flask under granian served
as scoring/server.py serves it, with a score endpoint that answers a constant JSON. What the
scorer takes beyond this is its own work.

    floor_server --port N [--threads 1]
"""

import argparse
import sys

from flask import Flask, jsonify, request
from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server import MPServer

ANSWER = {"score": 0.5, "model_id": "floor", "tag": "floor", "leaves": ["floor"], "seq": 0}


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/v1/score/<tag>")
    def score(tag):
        request.get_data(cache=False)  # the body is read, as the scorer reads it, and ignored
        return jsonify(ANSWER)

    @app.get("/healthz")
    def health():
        return jsonify({"status": "ok"})

    return app


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    # The scorer's granian settings (64 is its default concurrency limit).
    app = create_app()
    server = MPServer("floor", address=args.host, port=args.port, interface=Interfaces.WSGI,
                      workers=1, blocking_threads=args.threads, backpressure=64 + args.threads,
                      backlog=1024, log_level=LogLevels.warning)
    server.serve(target_loader=lambda: app, wrap_loader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
