"""A throwaway image registry on 127.0.0.1 for tests, using Debian's docker-registry.

    with registry_server() as registry:  # "127.0.0.1:PORT"
        requests.get(f"http://{registry}/v2/")

Or as a pytest fixture: `from roundhouse.testing.registry_server import registry` in a test
module makes `registry` available to its tests. Plain HTTP, no auth, storage in a temporary
directory, bound to loopback only (the package's own config listens on every interface).
`registry_server(auth=...)` makes it require credentials instead: `auth` is the config's
auth section, as htpasswd_auth() writes for HTTP Basic auth, or a token section.
push_image() pushes a small image through the registry API, as `docker push` would.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.parse
import warnings
from typing import Iterable, Iterator, Mapping

import requests

from roundhouse.testing.ports import free_port
from roundhouse.testing.process import running

try:  # the fixture is optional: the context manager works without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

_BINARY = "/usr/bin/docker-registry"

# Formatted as text, so the module needs no YAML library.
_CONFIG = """\
version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: "{root}"}}
  delete: {{enabled: true}}
http: {{addr: "127.0.0.1:{port}"}}
"""


class RegistryUnavailable(RuntimeError):
    pass


def htpasswd_auth(directory: str, users: Mapping[str, str]) -> str:
    """An auth section for HTTP Basic auth of `users` (name -> password); the htpasswd file
    goes in `directory`."""
    # docker-registry takes bcrypt hashes only, and the standard library's bcrypt is crypt
    # (deprecated, gone in Python 3.13; this repository runs 3.11).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    path = os.path.join(directory, "htpasswd")
    with open(path, "w") as f:
        f.writelines(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n"
                     for user, password in users.items())
    return f'htpasswd: {{realm: "roundhouse-test", path: "{path}"}}'


def _answers(port: int, statuses: tuple[int, ...]) -> bool:
    """GET /v2/ answers one of `statuses`: the API is up (http.client, so that no proxy
    setting gets in the way)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status in statuses
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def registry_server(auth: str = "") -> Iterator[str]:
    """Start a registry, yield its "127.0.0.1:PORT", kill it (and wait for it) on exit.
    `auth`: the config's auth section (YAML flow style); empty: anyone may pull and push."""
    binary = shutil.which("docker-registry") or _BINARY
    if not os.path.exists(binary):
        raise RegistryUnavailable("docker-registry not found; install Debian's package: "
                                  "apt-get install -y docker-registry")
    workdir = tempfile.mkdtemp(prefix="rh-registry-")
    port = free_port()
    config = os.path.join(workdir, "config.yml")
    with open(config, "w") as f:
        f.write(_CONFIG.format(root=os.path.join(workdir, "storage"), port=port))
        if auth:
            f.write(f"auth: {{{auth}}}\n")
    try:
        # With auth, the 401 asking for credentials is the sign that the API is up.
        with running([binary, "serve", config], lambda: _answers(port, (401,) if auth else (200,)),
                     name="docker-registry", error=RegistryUnavailable,
                     log_path=os.path.join(workdir, "server.log")):
            yield f"127.0.0.1:{port}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _push_blob(base: str, data: bytes, media_type: str, auth) -> dict:
    """A monolithic upload: POST opens it, PUT ?digest= sends the bytes and closes it."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    opened = requests.post(f"{base}/blobs/uploads/", auth=auth, timeout=10)
    assert opened.status_code == 202, opened.text
    location = urllib.parse.urljoin(base, opened.headers["Location"])  # may be relative
    done = requests.put(location, params={"digest": digest}, data=data, auth=auth, timeout=10,
                        headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def push_image(address: str, repository: str, tags: Iterable[str], layer: bytes = b"layer",
               auth=None) -> str:
    """Pushes an OCI image (a config blob, one layer, the manifest) to the registry at
    `address` under each tag; returns the manifest's digest, the sha256 of the bytes PUT.
    Different `layer` bytes make a different image; `auth` is requests' auth argument."""
    base = f"http://{address}/v2/{repository}"
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _push_blob(base, config, "application/vnd.oci.image.config.v1+json", auth),
        "layers": [_push_blob(base, layer, "application/vnd.oci.image.layer.v1.tar+gzip", auth)],
    }).encode()
    for tag in tags:
        put = requests.put(f"{base}/manifests/{tag}", data=manifest, auth=auth, timeout=10,
                           headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert put.status_code == 201, put.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


if pytest is not None:
    @pytest.fixture(scope="module")
    def registry():
        with registry_server() as address:
            yield address
