"""Settings: read from the environment then secrets, validated with a message naming the setting."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from chatbot.config import SAMPLE_COOKIE_KEY, Settings, cookie_key, load_settings, setting_names
from chatbot.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"
NOTES = Path(__file__).resolve().parent.parent / "notes"


def load(tmp_path, **values):
    (tmp_path / "notes").mkdir(exist_ok=True)
    return load_settings({"NOTES_DIR": str(tmp_path / "notes"), **values}, {})


def test_defaults_need_no_configuration(tmp_path):
    settings = load(tmp_path)
    assert (settings.database_url, settings.uses_langflow, settings.max_message_chars) == (
        "sqlite:///data/chatbot.db", False, 20_000)
    assert settings.langflow_timeout == 120.0 and not settings.is_production
    assert (settings.replay_concurrency, settings.replay_max_questions, settings.replay_worker) == (2, 100, True)


def test_replay_settings_are_read(tmp_path):
    settings = load(tmp_path, REPLAY_CONCURRENCY="4", REPLAY_MAX_QUESTIONS="25", REPLAY_WORKER="false")
    assert (settings.replay_concurrency, settings.replay_max_questions, settings.replay_worker) == (4, 25, False)


def test_environment_wins_over_secrets(tmp_path):
    (tmp_path / "notes").mkdir()
    settings = load_settings(
        {"NOTES_DIR": str(tmp_path / "notes"), "MAX_MESSAGE_CHARS": "500"},
        {"MAX_MESSAGE_CHARS": 900, "LANGFLOW_TIMEOUT": 30},
    )
    assert (settings.max_message_chars, settings.langflow_timeout) == (500, 30.0)


@pytest.mark.parametrize(("values", "setting", "hint"), [
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL", "postgresql+psycopg://"),
    ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL", "SQLite or PostgreSQL"),
    ({"LANGFLOW_URL": "localhost:7860", "LANGFLOW_FLOW_ID": "f"}, "LANGFLOW_URL", "http://localhost:7860"),
    ({"LANGFLOW_URL": "http://localhost:7860"}, "LANGFLOW_FLOW_ID", "Copy the flow's id"),
    ({"LANGFLOW_URL": "http://lf:7860", "LANGFLOW_FLOW_ID": "f", "LANGFLOW_API_KEY": "sk"}, "LANGFLOW_API_KEY", "truncated"),
    ({"LANGFLOW_TIMEOUT": "soon"}, "LANGFLOW_TIMEOUT", "must be a number"),
    ({"MAX_MESSAGE_CHARS": "-5"}, "MAX_MESSAGE_CHARS", "greater than 0"),
    ({"DB_POOL_SIZE": "ten"}, "DB_POOL_SIZE", "must be a whole number"),
    ({"CHATBOT_ENV": "staging"}, "CHATBOT_ENV", "'development' or 'production'"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT", "text, json"),
    ({"LOGIN_LOCK_MINUTES": "1,soon"}, "LOGIN_LOCK_MINUTES", "like 1,5,30"),
    ({"LOGIN_LOCK_MINUTES": "0"}, "LOGIN_LOCK_MINUTES", "greater than 0"),
    ({"CLIENT_ADDRESS_HEADER": "X Real IP"}, "CLIENT_ADDRESS_HEADER", "use e.g. X-Real-IP"),
    ({"PASSWORD_MIN_LENGTH": "0"}, "PASSWORD_MIN_LENGTH", "greater than 0"),
    ({"REPLAY_CONCURRENCY": "0"}, "REPLAY_CONCURRENCY", "greater than 0"),
    ({"REPLAY_MAX_QUESTIONS": "many"}, "REPLAY_MAX_QUESTIONS", "must be a whole number"),
    ({"REPLAY_WORKER": "sometimes"}, "REPLAY_WORKER", "true or false"),
])
def test_a_bad_setting_is_named_with_what_to_fix(tmp_path, values, setting, hint):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, **values)
    assert raised.value.setting == setting
    assert hint in str(raised.value)


def test_a_missing_notes_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match="NOTES_DIR: .*not a readable folder"):
        load_settings({"NOTES_DIR": str(tmp_path / "nowhere")}, {})


def test_production_refuses_a_weak_or_sample_cookie_key(tmp_path):
    for key in (None, "short", SAMPLE_COOKIE_KEY, "a" * 40):
        values = {"CHATBOT_ENV": "production"} | ({"AUTH_COOKIE_KEY": key} if key else {})
        with pytest.raises(ConfigError, match="AUTH_COOKIE_KEY"):
            load(tmp_path, **values)
    strong = "q2Xv8sLr0aT5mZp1Kc7NwYb4Hd9Ue3Jf6Gi"
    assert load(tmp_path, CHATBOT_ENV="production", AUTH_COOKIE_KEY=strong).is_production


def test_without_a_cookie_key_one_is_generated_once_beside_the_database(tmp_path, caplog):
    settings = load(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/db/chat.db")
    first = cookie_key(settings)
    assert len(first) >= 48 and first != SAMPLE_COOKIE_KEY
    assert (tmp_path / "db" / ".auth_cookie_key").read_text() == first
    assert cookie_key(settings) == first
    assert "generated a random key" in caplog.text


def test_the_sample_cookie_key_is_ignored_in_development(tmp_path):
    assert load(tmp_path, AUTH_COOKIE_KEY=SAMPLE_COOKIE_KEY).auth_cookie_key is None


def test_secrets_never_appear_in_the_settings_repr(tmp_path):
    settings = load(tmp_path, LANGFLOW_URL="http://lf:7860", LANGFLOW_FLOW_ID="f",
                    LANGFLOW_API_KEY="sk-very-secret-key", AUTH_COOKIE_KEY="cookie-secret-value",
                    DATABASE_URL="postgresql+psycopg://u:db-password@h/d")
    shown = repr(settings)
    for secret in ("sk-very-secret-key", "cookie-secret-value", "db-password"):
        assert secret not in shown


def test_every_setting_is_in_the_readme_configuration_table():
    documented = set(re.findall(r"^\| `([A-Z_]+)`", README.read_text(), flags=re.MULTILINE))
    assert documented == set(setting_names())


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().database_url = "sqlite://"


# -- the flow catalog and attachments ------------------------------------------------------------

LANGFLOW = {"LANGFLOW_URL": "http://lf:7860"}


def test_langflow_flow_id_alone_is_a_catalog_of_one(tmp_path):
    settings = load_settings({**LANGFLOW, "LANGFLOW_FLOW_ID": "f-1"}, {})
    assert [(e.flow, e.label, dict(e.tweaks)) for e in settings.langflow_flows] == [("f-1", "f-1", {})]
    assert settings.choices() == ["f-1"] and not settings.notes_engine


def test_a_catalog_in_the_environment_is_json_with_labels_and_default_tweaks(tmp_path):
    flows = '[{"flow": "a-1", "label": "Notes RAG", "tweaks": {"Model-1": {"temperature": 0.2}}}, "support-bot"]'
    settings = load_settings({**LANGFLOW, "LANGFLOW_FLOWS": flows, "LANGFLOW_FLOW_ID": "ignored"}, {})
    assert [(e.flow, e.label, dict(e.tweaks)) for e in settings.langflow_flows] == [
        ("a-1", "Notes RAG", {"Model-1": {"temperature": 0.2}}), ("support-bot", "support-bot", {})]
    assert settings.flow_entry(None).flow == "a-1" and settings.flow_entry("gone") is None


def test_a_catalog_in_the_secrets_is_a_toml_table_keyed_by_label(tmp_path):
    secrets = tomllib.loads("""
        [LANGFLOW_FLOWS."Notes RAG"]
        flow = "a-1"
        [LANGFLOW_FLOWS."Notes RAG".tweaks.Model-1]
        temperature = 0.2
        [LANGFLOW_FLOWS.Support]
        id = "support-bot"
    """)
    settings = load_settings({**LANGFLOW, "NOTES_DIR": str(NOTES)}, secrets)
    assert [(e.flow, e.label, dict(e.tweaks)) for e in settings.langflow_flows] == [
        ("a-1", "Notes RAG", {"Model-1": {"temperature": 0.2}}), ("support-bot", "Support", {})]
    assert settings.choices() == ["a-1", "support-bot", "notes"]  # NOTES_DIR set: the notes engine too


def test_a_catalog_as_an_array_of_tables_in_the_secrets(tmp_path):
    secrets = tomllib.loads('[[LANGFLOW_FLOWS]]\nflow = "a-1"\nlabel = "A"\n[[LANGFLOW_FLOWS]]\nflow = "b-2"\n')
    assert [e.label for e in load_settings(LANGFLOW, secrets).langflow_flows] == ["A", "b-2"]


@pytest.mark.parametrize(("flows", "hint"), [
    ("[{not json", "is not valid JSON"),
    ("[]", "non-empty list of flows"),
    ('[{"label": "No flow"}]', "has no 'flow'"),
    ('[{"flow": "a", "label": "Same"}, {"flow": "b", "label": "Same"}]', "names the label 'Same' twice"),
    ('["a", "a"]', "names the flow 'a' twice"),
    ('[{"flow": "a", "tweaks": {"Model-1": 0.2}}]', "table of tables keyed by component"),
    ('[{"flow": "a", "tweak": {}}]', "unknown key 'tweak'"),
    ('["notes"]', "names the built-in notes engine"),
    ("42", "non-empty list of flows"),
])
def test_a_bad_catalog_is_named_with_what_to_fix(flows, hint):
    with pytest.raises(ConfigError) as raised:
        load_settings({**LANGFLOW, "LANGFLOW_FLOWS": flows}, {})
    assert raised.value.setting == "LANGFLOW_FLOWS" and hint in str(raised.value)


def test_upload_types_are_extensions_and_none_turns_attachments_off(tmp_path):
    assert load(tmp_path, UPLOAD_TYPES=".PDF, txt png").upload_types == ("pdf", "txt", "png")
    assert load(tmp_path, UPLOAD_TYPES="none").upload_types == ()
    with pytest.raises(ConfigError, match="UPLOAD_TYPES: 'p/df' is not a file extension"):
        load(tmp_path, UPLOAD_TYPES="p/df")
    with pytest.raises(ConfigError, match="MAX_UPLOAD_MB: must be greater than 0"):
        load(tmp_path, MAX_UPLOAD_MB="0")


def test_lock_durations_are_minutes_separated_by_commas(tmp_path):
    assert load(tmp_path).login_lock_minutes == (1.0, 5.0, 30.0)
    assert load(tmp_path, LOGIN_LOCK_MINUTES="0.05, 2").login_lock_minutes == (0.05, 2.0)
