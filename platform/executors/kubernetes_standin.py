"""A local HTTP stand-in for the Kubernetes API server, for tests.

No API server installs on these machines, so tests point the official client at this one
(http.server on 127.0.0.1, in a thread). It records each request (method, path, query, JSON
body) for the test to check and answers with the canned responses the test routes to it.
"""

import contextlib
import dataclasses
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import client

NS = "roundhouse"  # the KubernetesConfig default, as in the canned objects
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"  # the paths the client calls
PODS = f"/api/v1/namespaces/{NS}/pods"


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict
    body: object


class StandIn:
    """Routes (method, path) to a response: (status, json) or a list of them used in turn,
    or ("stream", [lines], close_early) for a watch."""

    def __init__(self):
        self.routes = {}
        self.requests: list[Request] = []
        self.unexpected: list[Request] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                req = Request(self.command, url.path,
                              dict(urllib.parse.parse_qsl(url.query)),
                              json.loads(raw) if raw else None)
                stand_in.requests.append(req)
                key = (self.command, url.path + ("?watch" if req.query.get("watch") else ""))
                route = stand_in.routes.get(key)
                if isinstance(route, list):
                    route = route.pop(0) if len(route) > 1 else route[0]
                if route is None:
                    stand_in.unexpected.append(req)
                    route = (404, status_obj(404, "NotFound", f"no route for {key}"))
                if route[0] == "stream":
                    _, lines, close_early = route
                    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    # Promise more than we send and hang up: a dropped watch connection.
                    self.send_header("Content-Length", str(len(data) + (100 if close_early else 0)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                status, body = route
                if callable(body):
                    body = body(req)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(
                    body, str) else "text/plain")
                if isinstance(body, str):
                    data = body.encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def calls(self):
        return [(r.method, r.path) for r in self.requests]


def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}


@contextlib.contextmanager
def running():
    """A started stand-in and an official ApiClient pointed at it; both stopped on exit."""
    stand_in = StandIn()
    stand_in.thread.start()
    config = client.Configuration()
    config.host = stand_in.url
    api_client = client.ApiClient(config)
    try:
        yield stand_in, api_client
    finally:
        api_client.close()
        stand_in.server.shutdown()
        stand_in.server.server_close()


# ---- canned API objects ----

def job_obj(name, conditions=(), active=0, job_id="j1"):
    return {"kind": "Job", "apiVersion": "batch/v1",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "7",
                         "annotations": {"roundhouse.io/job-id": job_id}},
            "spec": {"activeDeadlineSeconds": 3600, "template": {"spec": {"containers": []}}},
            "status": {"active": active, "conditions": list(conditions)}}


def condition(type_, reason="", message="", status="True"):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def pod_obj(name, phase="Pending", container_state=None, conditions=(), created="2025-03-01T11:00:00Z"):
    status = {"phase": phase, "conditions": list(conditions)}
    if container_state is not None:
        status["containerStatuses"] = [{
            "name": "train", "image": "localhost:5000/roundhouse/fraud:latest",
            "imageID": "", "ready": False, "restartCount": 0, "state": container_state}]
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
            "spec": {"containers": [{"name": "train", "image": "x"}]}, "status": status}


def pod_list(*pods):
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": list(pods)}
