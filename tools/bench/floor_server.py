"""The floor of //tools/bench:scoring: the scorer's HTTP stack, Flask under waitress served
as scoring/server.py serves it, with a score endpoint that answers a constant JSON. What the
scorer takes beyond this is its own work.

    floor_server --port N [--threads 8]
"""

import argparse
import socket
import sys

import waitress
from flask import Flask, jsonify, request

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
    p.add_argument("--threads", type=int, default=8)
    args = p.parse_args(argv)
    # The scorer's socket and waitress settings (64 is its default concurrency limit).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    waitress.serve(create_app(), sockets=[sock], threads=args.threads, connection_limit=64 + args.threads,
                   _quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
