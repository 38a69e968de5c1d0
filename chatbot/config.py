"""Settings: one typed, frozen object read from environment variables, then Streamlit secrets."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets as secrets_lib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from chatbot.errors import ConfigError

logger = logging.getLogger(__name__)

DEVELOPMENT, PRODUCTION = "development", "production"
# The value shipped in .streamlit/secrets.toml.example: refused in production.
SAMPLE_COOKIE_KEY = "change-me-to-a-long-random-string"
MIN_PRODUCTION_KEY_LENGTH = 32
MIN_API_KEY_LENGTH = 6  # the client scrubs keys from error texts; a shorter one would garble words


NOTES = "notes"  # the catalog key of the built-in notes engine
IMAGE_TYPES = frozenset({"png", "jpg", "jpeg", "gif", "webp"})  # go to the Chat Input, for a model that sees
DEFAULT_UPLOAD_TYPES = ("pdf", "txt", "md", "csv", "json", "docx", "html", *sorted(IMAGE_TYPES))


@dataclass(frozen=True)
class FlowEntry:
    """One flow of the catalog: what to run (a Langflow flow id or endpoint name), what analysts
    see it as, and the tweaks sent with every question to it."""

    flow: str
    label: str
    tweaks: Mapping = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Settings:
    """Every setting the app reads. The README's configuration table lists each ``env`` name."""

    database_url: str = "sqlite:///data/chatbot.db"
    langflow_url: str | None = None
    langflow_flow_id: str | None = None
    langflow_api_key: str | None = None
    langflow_timeout: float = 120.0
    # Every flow analysts may pick; LANGFLOW_FLOW_ID alone is a catalog of one.
    langflow_flows: tuple[FlowEntry, ...] = ()
    notes_dir: Path = Path("notes")
    # The notes engine is a choice when nothing else answers, or when NOTES_DIR is set with Langflow.
    notes_engine: bool = field(default=True, metadata={"derived": True})  # not a setting of its own
    max_upload_mb: float = 20.0
    upload_types: tuple[str, ...] = DEFAULT_UPLOAD_TYPES
    auth_cookie_key: str | None = None
    auth_cookie_name: str = "chatbot_auth"
    auth_cookie_days: float = 30.0
    login_max_attempts: int = 5
    # Each lock after LOGIN_MAX_ATTEMPTS failures in a row lasts the next of these (the last repeats).
    login_lock_minutes: tuple[float, ...] = (1.0, 5.0, 30.0)
    # Failures from one client address (every user name together) before it is locked too.
    login_address_max_attempts: int = 20
    # The request header that names the client behind a reverse proxy (deploy/: X-Real-IP).
    client_address_header: str | None = None
    password_min_length: int = 12
    # Sign-in: the username and password form, and single sign-on (OIDC) when st.secrets has [auth].
    password_login: bool = True
    sso_providers: tuple[str, ...] = field(default=(), metadata={"derived": True})  # from [auth]
    sso_allowed_domains: frozenset[str] = frozenset()
    sso_admin_emails: frozenset[str] = frozenset()
    sso_admin_claim: tuple[str, str] | None = None  # ("groups", "chat-admins")
    max_message_chars: int = 20_000
    max_preview_chars: int = 100_000
    allowed_image_hosts: frozenset[str] = frozenset()
    db_pool_size: int = 10
    # Replays: questions asked at once across the deployment, questions per replay, and whether this
    # process runs a replay worker (false: ``python -m chatbot replay worker`` runs elsewhere).
    replay_concurrency: int = 2
    replay_max_questions: int = 100
    replay_worker: bool = True
    chatbot_env: str = DEVELOPMENT
    log_level: str = "INFO"
    log_format: str = "text"

    @property
    def uses_langflow(self) -> bool:
        return self.langflow_url is not None

    def choices(self) -> list[str]:
        """The catalog keys an analyst may pick for a new conversation, the default first: each
        flow's ``flow``, and ``NOTES`` for the notes engine."""
        return [entry.flow for entry in self.langflow_flows] + ([NOTES] if self.notes_engine else [])

    def flow_entry(self, key: str | None) -> FlowEntry | None:
        """The catalog entry of ``key`` (None: the default); None for the notes engine or a flow
        no longer in the catalog."""
        key = key or (self.choices() or [None])[0]
        return next((entry for entry in self.langflow_flows if entry.flow == key), None)

    @property
    def is_production(self) -> bool:
        return self.chatbot_env == PRODUCTION

    def __repr__(self) -> str:  # never print secrets, even in a traceback
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for secret in ("langflow_api_key", "auth_cookie_key"):
            shown[secret] = "***" if shown[secret] else None
        shown["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        return f"Settings({shown})"


def setting_names() -> list[str]:
    """The environment-variable names of every setting (the README documents each)."""
    return [f.name.upper() for f in fields(Settings) if not f.metadata.get("derived")]


def load_settings(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, object] | None = None,
    *, check_engine: bool = True,
) -> Settings:
    """Read, validate and return the settings; raise ConfigError naming the bad one.

    ``check_engine=False`` skips what only the running app needs: the answering engine's checks
    and the sign-in's ([auth], PASSWORD_LOGIN); the command line and serve.py need neither.
    """
    environ, secrets = os.environ if environ is None else environ, secrets or {}
    raw = _merge(environ, secrets)
    env = raw.get("CHATBOT_ENV", DEVELOPMENT).strip().lower()
    if env not in (DEVELOPMENT, PRODUCTION):
        raise ConfigError("CHATBOT_ENV", f"must be '{DEVELOPMENT}' or '{PRODUCTION}', not {env!r}.")
    langflow_url = _langflow_url(raw.get("LANGFLOW_URL"))
    flow_id = raw.get("LANGFLOW_FLOW_ID") or None
    catalog = _catalog(_structured(environ, secrets, "LANGFLOW_FLOWS"), flow_id) if langflow_url else ()
    settings = Settings(
        database_url=_database_url(raw.get("DATABASE_URL", Settings.database_url)),
        langflow_url=langflow_url,
        langflow_flow_id=flow_id,
        langflow_api_key=raw.get("LANGFLOW_API_KEY") or None,
        langflow_timeout=_number(raw, "LANGFLOW_TIMEOUT", Settings.langflow_timeout, float),
        langflow_flows=catalog,
        notes_dir=Path(raw.get("NOTES_DIR") or Settings.notes_dir),
        notes_engine=not langflow_url or "NOTES_DIR" in raw,
        max_upload_mb=_number(raw, "MAX_UPLOAD_MB", Settings.max_upload_mb, float),
        upload_types=_file_types(raw.get("UPLOAD_TYPES")),
        auth_cookie_key=_cookie_key(raw.get("AUTH_COOKIE_KEY"), env),
        auth_cookie_name=raw.get("AUTH_COOKIE_NAME") or Settings.auth_cookie_name,
        auth_cookie_days=_number(raw, "AUTH_COOKIE_DAYS", Settings.auth_cookie_days, float),
        login_max_attempts=_number(raw, "LOGIN_MAX_ATTEMPTS", Settings.login_max_attempts, int),
        login_lock_minutes=_minutes(raw.get("LOGIN_LOCK_MINUTES")),
        login_address_max_attempts=_number(raw, "LOGIN_ADDRESS_MAX_ATTEMPTS", Settings.login_address_max_attempts,
                                           int),
        client_address_header=_header_name(raw.get("CLIENT_ADDRESS_HEADER")),
        password_min_length=_number(raw, "PASSWORD_MIN_LENGTH", Settings.password_min_length, int),
        password_login=_flag(raw, "PASSWORD_LOGIN", Settings.password_login),
        sso_providers=_sso_providers(secrets.get("auth"), env) if check_engine else (),
        sso_allowed_domains=_domains(raw.get("SSO_ALLOWED_DOMAINS", "")),
        sso_admin_emails=_emails(raw.get("SSO_ADMIN_EMAILS", "")),
        sso_admin_claim=_claim_rule(raw.get("SSO_ADMIN_CLAIM")),
        max_message_chars=_number(raw, "MAX_MESSAGE_CHARS", Settings.max_message_chars, int),
        max_preview_chars=_number(raw, "MAX_PREVIEW_CHARS", Settings.max_preview_chars, int),
        allowed_image_hosts=_hosts(raw.get("ALLOWED_IMAGE_HOSTS", "")),
        db_pool_size=_number(raw, "DB_POOL_SIZE", Settings.db_pool_size, int),
        replay_concurrency=_number(raw, "REPLAY_CONCURRENCY", Settings.replay_concurrency, int),
        replay_max_questions=_number(raw, "REPLAY_MAX_QUESTIONS", Settings.replay_max_questions, int),
        replay_worker=_flag(raw, "REPLAY_WORKER", Settings.replay_worker),
        chatbot_env=env,
        log_level=_log_level(raw.get("LOG_LEVEL", Settings.log_level)),
        log_format=_choice(raw, "LOG_FORMAT", ("text", "json"), Settings.log_format),
    )
    if check_engine:
        _check_sign_in(settings)
        _check_engine(settings)
    _check_production(settings)
    return settings


def _merge(environ: Mapping[str, str], secrets: Mapping[str, object]) -> dict[str, str]:
    """Environment first, then top-level scalar secrets; empty strings count as unset."""
    names = setting_names()
    merged = {
        n: str(secrets[n]) for n in names
        if n in secrets and secrets[n] not in (None, "") and not isinstance(secrets[n], (Mapping, list))
    }
    merged.update({n: environ[n] for n in names if environ.get(n, "").strip()})
    return {k: v.strip() for k, v in merged.items()}


def _structured(environ: Mapping[str, str], secrets: Mapping[str, object], name: str) -> object:
    """A setting that is a structure: JSON text in the environment, or a TOML table or array in
    the secrets (or JSON text there too)."""
    value = environ.get(name, "").strip() or secrets.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        return json.loads(json.dumps(value))  # st.secrets' AttrDicts as plain dicts and lists
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ConfigError(name, f"is not valid JSON ({exc.msg} at character {exc.pos}).") from None


def _catalog(value: object, flow_id: str | None) -> tuple[FlowEntry, ...]:
    """LANGFLOW_FLOWS as entries: a list of flow ids (or endpoint names) or of tables with ``flow``
    (or ``id``), an optional ``label`` and ``tweaks``; or a table of such tables keyed by label.
    Without it, LANGFLOW_FLOW_ID is a catalog of one."""
    if value is None:
        return (FlowEntry(flow_id, flow_id),) if flow_id else ()
    items = list(value.items()) if isinstance(value, Mapping) else [(None, item) for item in value] \
        if isinstance(value, list) else None
    if not items:
        raise ConfigError("LANGFLOW_FLOWS", "must be a non-empty list of flows, e.g. "
                          '[{"flow": "<flow id or endpoint name>", "label": "Notes RAG"}].')
    entries = tuple(_flow_entry(key, item) for key, item in items)
    for attribute in ("flow", "label"):
        seen = [getattr(entry, attribute) for entry in entries]
        if twice := sorted({name for name in seen if seen.count(name) > 1}):
            raise ConfigError("LANGFLOW_FLOWS", f"names the {attribute} {twice[0]!r} twice; each must be unique.")
    if NOTES in [entry.flow for entry in entries]:
        raise ConfigError("LANGFLOW_FLOWS", f"{NOTES!r} names the built-in notes engine; use another flow name.")
    return entries


def _flow_entry(key: str | None, item: object) -> FlowEntry:
    if isinstance(item, str):
        item = {"flow": item}
    if not isinstance(item, Mapping):
        raise ConfigError("LANGFLOW_FLOWS", f"each flow is a flow id or a table with 'flow', not {item!r}.")
    flow = str(item.get("flow") or item.get("id") or "").strip()
    if not flow:
        raise ConfigError("LANGFLOW_FLOWS", f"the entry {key or dict(item)!r} has no 'flow' (the flow's id or endpoint name).")
    tweaks = item.get("tweaks") or {}
    if not isinstance(tweaks, Mapping) or not all(isinstance(t, Mapping) for t in tweaks.values()):
        raise ConfigError("LANGFLOW_FLOWS", f"the tweaks of {flow!r} must be a table of tables keyed by component "
                          'id, e.g. {"OpenAIModel-x1y2z": {"temperature": 0.2}}.')
    unknown = sorted(set(item) - {"flow", "id", "label", "tweaks"})
    if unknown:
        raise ConfigError("LANGFLOW_FLOWS", f"the entry for {flow!r} has an unknown key {unknown[0]!r} "
                          "(use flow, label and tweaks).")
    label = " ".join(str(item.get("label") or key or flow).split())
    return FlowEntry(flow=flow, label=label, tweaks=json.loads(json.dumps(tweaks)))


def _file_types(value: str | None) -> tuple[str, ...]:
    """UPLOAD_TYPES: file extensions separated by commas or spaces, without dots; "" or "none" turns
    attachments off."""
    if value is None:
        return DEFAULT_UPLOAD_TYPES
    types = tuple(dict.fromkeys(t.strip().lower().lstrip(".") for t in value.replace(",", " ").split()))
    if types == ("none",):
        return ()
    for kind in types:
        if not re.fullmatch(r"[a-z0-9]{1,10}", kind):
            raise ConfigError("UPLOAD_TYPES", f"{kind!r} is not a file extension; list them like pdf, txt, png.")
    return types


def _database_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL",
            "is not a SQLAlchemy URL. Use sqlite:///data/chatbot.db or "
            "postgresql+psycopg://user:password@host:5432/dbname.",
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError("DATABASE_URL", f"must be SQLite or PostgreSQL, not {url.get_backend_name()!r}.")
    return value


def _langflow_url(value: str | None) -> str | None:
    if not value:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            "LANGFLOW_URL", f"{value!r} is not an http(s) URL. Use e.g. http://localhost:7860."
        )
    return value.rstrip("/")


def _number(raw: Mapping[str, str], name: str, default, kind):
    if name not in raw:
        return default
    try:
        value = kind(raw[name])
    except ValueError:
        raise ConfigError(name, f"must be a {'whole ' if kind is int else ''}number, not {raw[name]!r}.") from None
    if value <= 0:
        raise ConfigError(name, f"must be greater than 0, not {raw[name]!r}.")
    return value


def _minutes(value: str | None) -> tuple[float, ...]:
    """LOGIN_LOCK_MINUTES: durations in minutes separated by commas, e.g. "1,5,30"."""
    if value is None:
        return Settings.login_lock_minutes
    try:
        minutes = tuple(float(part) for part in value.replace(" ", "").split(",") if part)
    except ValueError:
        minutes = ()
    if not minutes or min(minutes) <= 0:
        raise ConfigError("LOGIN_LOCK_MINUTES", f"must be minutes greater than 0 separated by commas, "
                          f"like 1,5,30, not {value!r}.")
    return minutes


def _header_name(value: str | None) -> str | None:
    if value and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value):
        raise ConfigError("CLIENT_ADDRESS_HEADER", f"{value!r} is not a header name; use e.g. X-Real-IP.")
    return value or None


def _hosts(value: str) -> frozenset[str]:
    """Host names, separated by commas or spaces: exact names, no wildcards, no schemes."""
    hosts = frozenset(h.strip().lower() for h in value.replace(",", " ").split() if h.strip())
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d+)?", host):
            raise ConfigError(
                "ALLOWED_IMAGE_HOSTS", f"{host!r} is not a host name. List names like images.example.com, "
                "separated by commas."
            )
    return hosts


def _choice(raw: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = raw.get(name, default).lower()
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, not {value!r}.")
    return value


def _flag(raw: Mapping[str, str], name: str, default: bool) -> bool:
    value = raw.get(name, str(default)).lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ConfigError(name, f"must be true or false, not {raw[name]!r}.")
    return value in ("true", "1", "yes", "on")


def _words(value: str) -> list[str]:
    return [word.strip().lower() for word in value.replace(",", " ").split() if word.strip()]


def _domains(value: str) -> frozenset[str]:
    """SSO_ALLOWED_DOMAINS: e-mail domains (example.com), separated by commas or spaces."""
    domains = frozenset(word.lstrip("@") for word in _words(value))
    for domain in domains:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+", domain):
            raise ConfigError("SSO_ALLOWED_DOMAINS", f"{domain!r} is not an e-mail domain. List domains like "
                              "example.com, separated by commas.")
    return domains


def _emails(value: str) -> frozenset[str]:
    emails = frozenset(_words(value))
    for email in emails:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise ConfigError("SSO_ADMIN_EMAILS", f"{email!r} is not an e-mail address.")
    return emails


def _claim_rule(value: str | None) -> tuple[str, str] | None:
    """SSO_ADMIN_CLAIM: "claim=value", e.g. groups=chat-admins (a dotted claim reaches into an object)."""
    if not value:
        return None
    claim, equals, wanted = (part.strip() for part in value.partition("="))
    if not equals or not claim or not wanted or not re.fullmatch(r"[\w:/.-]+", claim):
        raise ConfigError("SSO_ADMIN_CLAIM", f"{value!r} is not claim=value. Write e.g. groups=chat-admins "
                          "(members of the chat-admins group become admins).")
    return claim, wanted


def _sso_providers(auth: object, env: str) -> tuple[str, ...]:
    """The single sign-on providers of st.secrets [auth], as st.login names them ("default": the
    unnamed one); () without [auth]. Streamlit reads the section itself; this checks it early."""
    if not auth:
        return ()
    if not isinstance(auth, Mapping):
        raise ConfigError("[auth]", "must be a table in secrets.toml (see the README, Single sign-on).")
    names = ["default"] if "client_id" in auth else []
    names += [name for name, value in auth.items() if isinstance(value, Mapping) and "client_id" in value]
    if not names:
        raise ConfigError("[auth]", "names no provider: give client_id, client_secret and server_metadata_url "
                          "in [auth] or in an [auth.NAME] table per provider.")
    for key in ("redirect_uri", "cookie_secret"):
        if not str(auth.get(key) or "").strip():
            raise ConfigError("[auth]", f"needs {key} (see the README, Single sign-on).")
    if not str(auth["redirect_uri"]).rstrip("/").endswith("/oauth2callback"):
        raise ConfigError("[auth]", "redirect_uri must be the app's address with the path /oauth2callback, "
                          "e.g. https://chat.example.com/oauth2callback.")
    secret = str(auth["cookie_secret"])
    if env == PRODUCTION and (len(secret) < MIN_PRODUCTION_KEY_LENGTH or len(set(secret)) < 8):
        raise ConfigError("[auth]", f"cookie_secret must be a random secret of at least {MIN_PRODUCTION_KEY_LENGTH} "
                          "characters in production.")
    for name in names:
        section = auth if name == "default" else auth[name]
        missing = [key for key in ("client_id", "client_secret", "server_metadata_url") if not section.get(key)]
        if "_" in name or missing:
            raise ConfigError("[auth]", f"provider {name!r}: " + (
                "a provider's name cannot hold '_' (Streamlit refuses it)." if "_" in name
                else f"needs {', '.join(missing)}."))
    return tuple(names)


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, not {value!r}.")
    return level


def _cookie_key(value: str | None, env: str) -> str | None:
    """The sample key from secrets.toml.example is never used: refused in production, ignored otherwise."""
    if value == SAMPLE_COOKIE_KEY and env != PRODUCTION:
        logger.warning("AUTH_COOKIE_KEY is the sample value from secrets.toml.example: ignoring it.")
        return None
    return value or None


def _check_sign_in(settings: Settings) -> None:
    if not settings.password_login and not settings.sso_providers:
        raise ConfigError("PASSWORD_LOGIN", "is false and st.secrets has no [auth] section for single sign-on: "
                          "nobody could sign in. Configure a provider in [auth] or set PASSWORD_LOGIN=true.")


def _check_engine(settings: Settings) -> None:
    if settings.uses_langflow:
        if settings.langflow_api_key is not None and len(settings.langflow_api_key) < MIN_API_KEY_LENGTH:
            raise ConfigError(
                "LANGFLOW_API_KEY", "looks truncated: Langflow API keys are long (sk-…). Paste the whole key."
            )
        if not settings.langflow_flows:
            raise ConfigError(
                "LANGFLOW_FLOW_ID",
                "is required when LANGFLOW_URL is set (or LANGFLOW_FLOWS, a list of flows). Copy the flow's id "
                "from Langflow (Share → API access) or unset LANGFLOW_URL to use the built-in notes engine.",
            )
        if not settings.notes_engine:
            return
    notes = settings.notes_dir
    if not notes.is_dir() or not os.access(notes, os.R_OK | os.X_OK):
        raise ConfigError(
            "NOTES_DIR",
            f"{str(notes)!r} is not a readable folder. Create it and put .md or .txt notes in it, "
            "or set LANGFLOW_URL to answer with a Langflow flow.",
        )


def _check_production(settings: Settings) -> None:
    if not settings.is_production:
        return
    key = settings.auth_cookie_key or ""
    if key == SAMPLE_COOKIE_KEY or len(key) < MIN_PRODUCTION_KEY_LENGTH or len(set(key)) < 8:
        raise ConfigError(
            "AUTH_COOKIE_KEY",
            f"must be a random secret of at least {MIN_PRODUCTION_KEY_LENGTH} characters in "
            "production (generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))').",
        )


def read_secrets_file(path: Path = Path(".streamlit/secrets.toml")) -> dict:
    """Streamlit's secrets file, for code that runs outside Streamlit (the command line)."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), f"cannot be read: {exc}") from None


def cookie_key(settings: Settings) -> str:
    """The configured cookie key, or one generated once and kept beside the SQLite database."""
    if settings.auth_cookie_key:
        return settings.auth_cookie_key
    path = _key_file(settings.database_url)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets_lib.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(key)
    logger.warning(
        "AUTH_COOKIE_KEY is not set: generated a random key and stored it in %s. "
        "Set AUTH_COOKIE_KEY for a deployment with several replicas.", path
    )
    return key


def _key_file(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / ".auth_cookie_key"
    return Path("data") / ".auth_cookie_key"
