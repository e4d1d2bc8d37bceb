"""RegistryClient against a real registry (Debian's docker-registry on 127.0.0.1), holding
images pushed through the registry API the way tools/deploy pushes them.

For Bearer auth the registry verifies tokens from a token service that the test runs (as
Docker Hub's, GHCR's or Harbor's would be): it signs JWTs with a key whose self-signed
certificate the registry trusts.
"""

import base64
import datetime as dt
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from roundhouse.platform.images.registry import (
    Credentials,
    ImageNotFound,
    RegistryError,
    RegistryClient,
    split_reference,
)
from roundhouse.testing.ports import free_port
from roundhouse.testing.registry_server import (  # noqa: F401  (registry: a fixture)
    htpasswd_auth,
    push_image,
    registry,
    registry_server,
)

SHA = "3f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e"
NEXT_SHA = "9e8f7a6b5c4d3e3f1c2a9e8b7d6c5e4f3a2b1c0d"


def test_commit_and_main_tags_resolve_to_the_digest_of_the_manifest_pushed(registry):
    resolver = RegistryClient(insecure=True)
    first = push_image(registry, "roundhouse/fraud", [SHA, "main"], layer=b"first")
    assert resolver.digest(f"{registry}/roundhouse/fraud:{SHA}") == first
    assert resolver.digest(f"{registry}/roundhouse/fraud:main") == first
    # The next deploy moves main; the commit's tag still names the image built from it.
    second = push_image(registry, "roundhouse/fraud", [NEXT_SHA, "main"], layer=b"second")
    assert second != first
    assert resolver.digest(f"{registry}/roundhouse/fraud:main") == second
    assert resolver.digest(f"{registry}/roundhouse/fraud:{SHA}") == first


def test_a_tag_never_pushed_is_image_not_found_naming_the_reference_and_tools_deploy(registry):
    push_image(registry, "roundhouse/fraud", ["main"])
    resolver = RegistryClient(insecure=True)
    for reference in (f"{registry}/roundhouse/fraud:{'0' * 40}",  # an undeployed commit
                      f"{registry}/roundhouse/churn:main"):  # a workflow never deployed
        with pytest.raises(ImageNotFound) as e:
            resolver.digest(reference)
        assert f"image {reference} not found" in str(e.value)
        assert "deploy that commit first with tools/deploy" in str(e.value)


def test_an_unreachable_registry_is_an_error_naming_it():
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RegistryError, match=f"image registry {address} is unreachable"):
        RegistryClient(insecure=True, timeout_seconds=2).digest(f"{address}/roundhouse/fraud:main")


def test_https_to_a_plain_http_registry_points_at_registry_insecure(registry):
    with pytest.raises(RegistryError, match=f"image registry {registry}: .*registry_insecure: true"):
        RegistryClient(timeout_seconds=2).digest(f"{registry}/roundhouse/fraud:main")


def test_basic_auth_uses_the_credentials_and_says_when_they_are_missing_or_wrong(tmp_path):
    with registry_server(auth=htpasswd_auth(str(tmp_path), {"deploy": "s3cret"})) as address:
        pushed = push_image(address, "roundhouse/fraud", ["main"], auth=("deploy", "s3cret"))
        reference = f"{address}/roundhouse/fraud:main"
        good = Credentials.from_env("REG_USER", "REG_PASSWORD",
                                    {"REG_USER": "deploy", "REG_PASSWORD": "s3cret"})
        assert RegistryClient(insecure=True, credentials=good).digest(reference) == pushed
        with pytest.raises(RegistryError, match=f"image registry {address} wants credentials"
                                                ".*registry_username_env"):
            RegistryClient(insecure=True).digest(reference)
        wrong = Credentials("deploy", "guess")
        with pytest.raises(RegistryError, match="refused .* as user 'deploy'") as e:
            RegistryClient(insecure=True, credentials=wrong).digest(reference)
        assert "guess" not in str(e.value)


class TokenService:
    """Issues registry tokens (ES256 JWTs) for the scopes asked, to `user` only."""

    ISSUER, SERVICE = "roundhouse-test-tokens", "roundhouse-test-registry"

    def __init__(self, directory, user, password):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.ISSUER)])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(1)
                     .not_valid_before(now - dt.timedelta(minutes=5))
                     .not_valid_after(now + dt.timedelta(hours=1))
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = directory / "tokens.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.asked: list[dict] = []  # the query of every token request
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                service.asked.append(query)
                if self.headers.get("Authorization") != service.basic:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": service.token(query.get("scope", []))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def realm(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def registry_auth(self) -> str:
        return (f'token: {{realm: "{self.realm}", service: "{self.SERVICE}", '
                f'issuer: "{self.ISSUER}", rootcertbundle: "{self.cert_path}"}}')

    def token(self, scopes) -> str:
        now = int(time.time())
        access = []
        for scope in scopes:  # repository:<name>:<action,...>
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        claims = {"iss": self.ISSUER, "sub": "deploy", "aud": self.SERVICE, "iat": now,
                  "nbf": now - 10, "exp": now + 300, "jti": str(len(self.asked)), "access": access}
        header = {"alg": "ES256", "typ": "JWT",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signed}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Bearer(requests.auth.AuthBase):
    def __init__(self, token):
        self.token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


def test_bearer_auth_gets_a_pull_token_from_the_realm_with_the_credentials(tmp_path):
    tokens = TokenService(tmp_path, "deploy", "s3cret")
    threading.Thread(target=tokens.server.serve_forever, daemon=True).start()
    try:
        with registry_server(auth=tokens.registry_auth()) as address:
            push = Bearer(tokens.token(["repository:roundhouse/fraud:pull,push"]))
            pushed = push_image(address, "roundhouse/fraud", ["main"], auth=push)
            reference = f"{address}/roundhouse/fraud:main"
            tokens.asked.clear()
            resolver = RegistryClient(insecure=True, credentials=Credentials("deploy", "s3cret"))
            assert resolver.digest(reference) == pushed
            # The scope and service came from the registry's challenge; one token served.
            assert tokens.asked == [{"scope": ["repository:roundhouse/fraud:pull"],
                                     "service": [TokenService.SERVICE]}]
            with pytest.raises(RegistryError, match=f"the token service {tokens.realm} of image "
                                                    f"registry {address} answered 401 anonymously"):
                RegistryClient(insecure=True).digest(reference)
            with pytest.raises(ImageNotFound):
                resolver.digest(f"{address}/roundhouse/fraud:{SHA}")
    finally:
        tokens.server.shutdown()
        tokens.server.server_close()


def test_credentials_come_from_the_named_environment_variables_only():
    assert Credentials.from_env("", "", {"REG_USER": "x"}) is None
    with pytest.raises(ValueError, match="name both"):
        Credentials.from_env("REG_USER", "", {"REG_USER": "x"})
    with pytest.raises(ValueError, match="REG_PASSWORD .* not set"):
        Credentials.from_env("REG_USER", "REG_PASSWORD", {"REG_USER": "x"})
    assert "s3cret" not in repr(Credentials("deploy", "s3cret"))


def test_references_split_into_registry_name_and_tag():
    assert split_reference("127.0.0.1:5000/roundhouse/fraud:main") == (
        "127.0.0.1:5000", "roundhouse/fraud", "main")
    assert split_reference("registry.example.com/ml/roundhouse/fraud:" + SHA) == (
        "registry.example.com", "ml/roundhouse/fraud", SHA)
    for bad in ("roundhouse/fraud", "127.0.0.1:5000/roundhouse/fraud", "fraud:main"):
        with pytest.raises(ValueError, match="is not <registry>/<name>:<tag>"):
            split_reference(bad)
