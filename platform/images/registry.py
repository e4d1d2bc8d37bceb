"""A client of an OCI Distribution registry (Docker Registry HTTP API v2): tags to digests,
and pushing images.

A tag moves (`main` does at every deploy, and a tag can be pushed again), a digest never does.
So the Kubernetes executor asks which manifest a tag names now and runs the image by that
digest: every pod of a Job runs the same bytes, and the model record can say which. tools/deploy
pushes blobs (skipping those the registry has, mounting those another repository has) and
manifests under tags.

Every request goes anonymously first; when the registry answers 401 it is asked again with a
token (a `Bearer` challenge, for the scope the challenge names) or Basic credentials (a `Basic`
one). Credentials come from the process' environment, never from a file in the repository.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pathlib
import re
import urllib.parse
from typing import Callable, Mapping, Protocol

import requests

# What a tag may name: one image, or an index of images (one per platform), in the OCI or
# the older Docker media types. Without this Accept a registry may convert or refuse.
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# key=value or key="value, with commas" in a WWW-Authenticate challenge.
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


class ImageResolver(Protocol):
    def digest(self, reference: str) -> str:
        """The digest ("sha256:...") of the manifest that `reference`, <registry>/<name>:<tag>,
        names now."""


class ImageNotFound(ValueError):
    """The registry has no image under that tag: nothing was deployed for it."""


class RegistryError(RuntimeError):
    """The registry could not be asked: unreachable, refusing us, or answering oddly."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    username: str
    password: str = dataclasses.field(repr=False)

    @classmethod
    def from_env(cls, username_env: str, password_env: str,
                 environ: Mapping[str, str]) -> Credentials | None:
        """The credentials in the environment variables of those names; None when both names
        are empty (anonymous)."""
        if not username_env and not password_env:
            return None
        if not username_env or not password_env:
            raise ValueError("registry_username_env, registry_password_env: name both environment "
                             "variables (username and password), or neither for anonymous access")
        unset = [name for name in (username_env, password_env) if not environ.get(name)]
        if unset:
            raise ValueError(f"registry credentials: environment variable(s) {', '.join(unset)} "
                             "(named by registry_username_env / registry_password_env) not set")
        return cls(environ[username_env], environ[password_env])


def split_repository(repository: str) -> tuple[str, str]:
    """(registry host, repository name) of "<host>[:port]/<name>"."""
    host, slash, name = repository.partition("/")
    if not slash or not host or not name or ":" in name:
        raise ValueError(f"image repository {repository!r} is not <registry>/<name>")
    return host, name


def split_reference(reference: str) -> tuple[str, str, str]:
    """(registry host, repository name, tag) of "<host>[:port]/<name>:<tag>"."""
    host, slash, rest = reference.partition("/")
    name, colon, tag = rest.rpartition(":")
    if not slash or not host or not colon or not name or not tag or "/" in tag:
        raise ValueError(f"image reference {reference!r} is not <registry>/<name>:<tag>")
    return host, name, tag


@dataclasses.dataclass(frozen=True)
class RegistryClient:
    """The registry that each reference names; an ImageResolver."""

    insecure: bool = False  # plain HTTP: a registry on loopback
    credentials: Credentials | None = None
    timeout_seconds: float = 10.0
    # A layer of hundreds of MB takes a while to upload.
    upload_timeout_seconds: float = 900.0

    def _url(self, host: str, path: str) -> str:
        return f"{'http' if self.insecure else 'https'}://{host}/v2/{path}"

    def digest(self, reference: str) -> str:
        host, name, tag = split_reference(reference)
        url = self._url(host, f"{name}/manifests/{tag}")
        with requests.Session() as session:
            session.headers["Accept"] = ", ".join(MANIFEST_TYPES)
            resp = self._send(session, "HEAD", url, host, name)
            digest = resp.headers.get("Docker-Content-Digest", "")
            if resp.status_code == 200 and _DIGEST.fullmatch(digest):
                return digest
            if resp.status_code != 404:
                # Not every registry answers HEAD, or puts the digest in its answer.
                resp = self._send(session, "GET", url, host, name)
        if resp.status_code == 404:
            raise ImageNotFound(f"image {reference} not found: nothing was deployed under the tag "
                                f"{tag!r}; deploy that commit first with tools/deploy")
        if resp.status_code != 200:
            raise RegistryError(f"image registry {host} answered {resp.status_code} to GET {url}"
                                + _detail(resp))
        digest = resp.headers.get("Docker-Content-Digest", "")
        # The registry serves the manifest's bytes as pushed, so their hash is its digest.
        return digest if _DIGEST.fullmatch(digest) else \
            "sha256:" + hashlib.sha256(resp.content).hexdigest()

    # ---- pushing ----

    def has_blob(self, repository: str, digest: str) -> bool:
        host, name = split_repository(repository)
        with requests.Session() as session:
            resp = self._send(session, "HEAD", self._url(host, f"{name}/blobs/{digest}"), host, name)
        if resp.status_code in (200, 404):
            return resp.status_code == 200
        raise RegistryError(f"image registry {host} answered {resp.status_code} to HEAD of blob "
                            f"{digest} in {name}")

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Asks the registry to link a blob that repository `source` holds; False when it will
        not (then the blob must be uploaded)."""
        host, name = split_repository(repository)
        _, source_name = split_repository(source)
        url = self._url(host, f"{name}/blobs/uploads/?" + urllib.parse.urlencode(
            {"mount": digest, "from": source_name}))
        with requests.Session() as session:
            resp = self._send(session, "POST", url, host, name)
            if resp.status_code == 202 and resp.headers.get("Location"):
                # The registry opened an upload instead; close it rather than leave it dangling.
                self._call(session, host, "DELETE", urllib.parse.urljoin(url, resp.headers["Location"]))
        return resp.status_code == 201

    def push_blob(self, repository: str, digest: str, path: pathlib.Path) -> None:
        """Uploads the file in one PUT (a monolithic upload); the registry checks the digest."""
        host, name = split_repository(repository)
        start = self._url(host, f"{name}/blobs/uploads/")
        with requests.Session() as session:
            resp = self._send(session, "POST", start, host, name)
            if resp.status_code != 202 or not resp.headers.get("Location"):
                raise RegistryError(f"image registry {host} answered {resp.status_code} to starting "
                                    f"an upload to {name}" + _detail(resp))
            location = urllib.parse.urlsplit(urllib.parse.urljoin(start, resp.headers["Location"]))
            query = urllib.parse.parse_qsl(location.query) + [("digest", digest)]
            url = location._replace(query=urllib.parse.urlencode(query)).geturl()
            size = path.stat().st_size

            def body():
                return open(path, "rb")
            resp = self._send(session, "PUT", url, host, name, body=body, timeout=self.upload_timeout_seconds,
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Length": str(size)})
        if resp.status_code != 201:
            raise RegistryError(f"image registry {host} answered {resp.status_code} to the upload of "
                                f"{digest} to {name}" + _detail(resp))

    def put_manifest(self, reference: str, manifest: bytes, media_type: str) -> str:
        """Tags `manifest` as reference (<registry>/<name>:<tag>); returns its digest."""
        host, name, tag = split_reference(reference)
        with requests.Session() as session:
            resp = self._send(session, "PUT", self._url(host, f"{name}/manifests/{tag}"), host, name,
                              body=lambda: manifest, headers={"Content-Type": media_type})
        if resp.status_code != 201:
            raise RegistryError(f"image registry {host} answered {resp.status_code} to the manifest "
                                f"of {reference}" + _detail(resp))
        digest = resp.headers.get("Docker-Content-Digest", "")
        return digest if _DIGEST.fullmatch(digest) else "sha256:" + hashlib.sha256(manifest).hexdigest()

    # ---- authenticating ----

    def _send(self, session: requests.Session, method: str, url: str, host: str, name: str,
              body: Callable[[], object] | None = None, **kwargs) -> requests.Response:
        """The answer to `method url`, authenticating (on the session, so later requests reuse
        it) when the registry asks for it. `body` makes the request's body afresh for each try."""
        resp = self._call(session, host, method, url, body=body, **kwargs)
        if resp.status_code != 401:
            return resp
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        params = {m[1]: m[2] or m[3] for m in _CHALLENGE_PARAM.finditer(rest)}
        if scheme.lower() == "bearer":
            session.headers["Authorization"] = "Bearer " + self._token(session, host, name, params)
        elif scheme.lower() == "basic" and self.credentials is not None:
            session.auth = (self.credentials.username, self.credentials.password)
        else:
            raise RegistryError(f"image registry {host} wants credentials for {url} "
                                f"(WWW-Authenticate: {challenge or 'none'}); name the environment "
                                "variables holding them in registry_username_env and "
                                "registry_password_env")
        resp = self._call(session, host, method, url, body=body, **kwargs)
        if resp.status_code == 401:
            raise RegistryError(f"image registry {host} refused {method} {url} {self._who()}"
                                + _detail(resp))
        return resp

    def _token(self, session: requests.Session, host: str, name: str,
               params: Mapping[str, str]) -> str:
        """A token from the challenge's token service (the realm), for the scope it names."""
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"image registry {host} asked for a Bearer token without "
                                "naming a realm to get it from")
        query = {"service": params.get("service", host),
                 "scope": params.get("scope", f"repository:{name}:pull")}
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        resp = self._call(session, host, "GET", realm, params=query, auth=auth,
                          headers={"Accept": "application/json"})
        if resp.status_code != 200:
            raise RegistryError(f"the token service {realm} of image registry {host} answered "
                                f"{resp.status_code} {self._who()}" + _detail(resp))
        try:
            body = resp.json()
            return body.get("token") or body["access_token"]
        except (ValueError, KeyError, AttributeError) as exc:
            raise RegistryError(f"the token service {realm} of image registry {host} gave no "
                                "token" + _detail(resp)) from exc

    def _call(self, session: requests.Session, host: str, method: str, url: str,
              body: Callable[[], object] | None = None, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_seconds)
        data = body() if body is not None else None
        try:
            return session.request(method, url, data=data, allow_redirects=True, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryError(f"image registry {host}: TLS failed for {url} ({exc}); a registry "
                                "serving plain HTTP needs registry_insecure: true") from exc
        except requests.exceptions.RequestException as exc:  # refused, timed out, DNS...
            raise RegistryError(f"image registry {host} is unreachable ({method} {url}): "
                                f"{exc}") from exc
        finally:
            if isinstance(data, io.IOBase):
                data.close()

    def _who(self) -> str:
        return f"as user {self.credentials.username!r}" if self.credentials else "anonymously"


def _detail(resp: requests.Response) -> str:
    """The start of an error answer's body (a HEAD answer has none)."""
    text = resp.text.strip()
    return f": {text[:300]}" if text else ""
