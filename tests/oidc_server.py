"""A real OpenID Connect provider for the single sign-on tests: tests/oidc/provider.mjs (the
certified `oidc-provider` package from npm) on 127.0.0.1 and a free port.

`npm ci` installs the pinned package the first time (scripts/test.sh does it too). Without
Node.js the tests that need the provider skip on a laptop and fail in CI (``unavailable``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.conftest import unavailable

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
START_TIMEOUT = 30.0
CLIENT_ID = "chatbot-e2e"
CLIENT_SECRET = "e2e-only-client-secret-0123456789"


@dataclass(frozen=True)
class IdpUser:
    """A person at the provider: what they type on its login page, and the claims it sends."""

    sub: str
    username: str
    password: str
    name: str
    email: str
    groups: tuple[str, ...] = ()


# The subjects are opaque, as real providers' are; the app names users by e-mail address.
ANN = IdpUser("00u1ann7f3k9", "ann", "ann-idp-password", "Ann Admin", "ann@example.com", ("staff", "chat-admins"))
BEN = IdpUser("00u2ben4q8w1", "ben", "ben-idp-password", "Ben Analyst", "ben@example.com", ("staff",))
CY = IdpUser("00u3cy9z2m5x", "cy", "cy-idp-password", "Cy Leaver", "cy@example.com", ("staff",))
IDP_USERS = (ANN, BEN, CY)


@dataclass
class OidcProvider:
    """A running provider: its issuer, the one client, and its process and log."""

    issuer: str
    process: subprocess.Popen
    log_path: Path

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def install() -> str:
    """The node executable, with the provider's pinned packages installed (npm ci, once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("Node.js and npm are missing: the single sign-on tests need them for the OIDC provider")
    if not (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, capture_output=True,
                                text=True, timeout=300)
        if result.returncode != 0:
            unavailable(f"npm ci in tests/oidc failed: {result.stderr[-500:]}")
    return node


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_provider(workdir: Path, redirect_uris: list[str], users: tuple[IdpUser, ...] = IDP_USERS) -> OidcProvider:
    """Start tests/oidc/provider.mjs with one client and ``users``; wait until it answers discovery."""
    node = install()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "oidc-provider.json"
    config.write_text(json.dumps({
        "port": port,
        "client": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris},
        "users": [{**user.__dict__, "groups": list(user.groups)} for user in users],
    }))
    log_path = workdir / "oidc-provider.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([node, str(OIDC_DIR / "provider.mjs"), str(config)], cwd=OIDC_DIR,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "NODE_ENV": "test"})
    provider = OidcProvider(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the OIDC provider exited:\n{provider.log_tail()}")
        try:
            if requests.get(provider.metadata_url, timeout=2).ok:
                return provider
        except requests.RequestException:
            pass
        time.sleep(0.2)
    provider.stop()
    raise RuntimeError(f"the OIDC provider did not start in {START_TIMEOUT:.0f} s:\n{provider.log_tail()}")


def auth_secrets(provider: OidcProvider, redirect_uri: str, name: str = "acme", **client_kwargs: str) -> str:
    """The [auth] section of secrets.toml for this provider, as the README tells operators to write it."""
    kwargs = ", ".join(f"{key} = {json.dumps(value)}" for key, value in client_kwargs.items())
    return f"""[auth]
redirect_uri = "{redirect_uri}"
cookie_secret = "e2e-only-sso-cookie-secret-0123456789abcdefghij"

[auth.{name}]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
server_metadata_url = "{provider.metadata_url}"
client_kwargs = {{ {kwargs} }}
"""
