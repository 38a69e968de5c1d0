"""The command line, run as a user runs it: a subprocess against a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from chatbot import db as database
from chatbot import store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def run(*args, stdin=""):
        env = {**os.environ, "DATABASE_URL": url}
        return subprocess.run([sys.executable, "-m", "chatbot", *args], input=stdin, capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=60)

    run.url = url
    return run


def users_in(url):
    engine = database.make_engine(url)
    try:
        with database.session_factory(engine).begin() as session:
            return {u.username: (u.role, u.name, u.email) for u in store.list_users(session)}
    finally:
        engine.dispose()


def test_users_add_list_set_password_remove(cli):
    added = cli("users", "add", "Alice", "--role", "admin", "--name", "Alice A", "--email", "a@x.org",
                "--password-stdin", stdin="first-password\n")
    assert (added.returncode, added.stdout) == (0, "added alice (admin)\n")
    listed = cli("users", "list")
    assert listed.stdout.startswith("alice\tadmin\tAlice A\ta@x.org\tlast login never")
    assert cli("users", "set-password", "alice", "--password-stdin", stdin="second-password\n").returncode == 0
    engine = database.make_engine(cli.url)
    with database.session_factory(engine).begin() as session:
        hashed = store.get_user(session, "alice").password_hash.encode()
    engine.dispose()
    assert bcrypt.checkpw(b"second-password", hashed)
    assert cli("users", "remove", "alice").stdout == "removed alice\n"
    assert users_in(cli.url) == {}


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("users", "add", "bob", "--role", "boss", "--password-stdin"), "pw\n", "error: Unknown role 'boss'"),
    (("users", "add", "bob", "--password-stdin"), "\n", "error: No password given on standard input."),
    (("users", "set-password", "nobody", "--password-stdin"), "pw\n", "error: No user 'nobody'."),
    (("users", "remove", "nobody"), "", "error: No user 'nobody'."),
])
def test_mistakes_print_one_line_exit_2_and_change_nothing(cli, args, stdin, message):
    result = cli(*args, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert users_in(cli.url) == {}


def test_a_duplicate_user_is_refused(cli):
    cli("users", "add", "bob", "--password-stdin", stdin="pw-one\n")
    result = cli("users", "add", "BOB", "--role", "admin", "--password-stdin", stdin="pw-two\n")
    assert (result.returncode, result.stderr) == (2, "error: User 'bob' already exists.\n")
    assert users_in(cli.url) == {"bob": ("analyst", "bob", None)}


def test_a_malformed_database_url_is_one_line_and_exit_2(cli):
    result = subprocess.run([sys.executable, "-m", "chatbot", "users", "list"], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "DATABASE_URL": "postgres//nope"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: DATABASE_URL: is not a SQLAlchemy URL") and result.stderr.count("\n") == 1


def test_import_reads_a_streamlit_authenticator_config(cli, tmp_path):
    hashed = bcrypt.hashpw(b"jsmith-pw", bcrypt.gensalt(4)).decode()
    config = tmp_path / "config.yaml"
    config.write_text(
        "cookie: {expiry_days: 30, key: k, name: c}\n"
        "credentials:\n  usernames:\n"
        f"    jsmith: {{email: js@x.org, first_name: John, last_name: Smith, password: '{hashed}', roles: [admin]}}\n"
        "    rbriggs: {email: rb@x.org, name: Rebecca Briggs, password: plain-pw}\n"
    )
    result = cli("users", "import", str(config))
    assert (result.returncode, result.stdout) == (0, "imported 2 users\n")
    assert users_in(cli.url) == {"jsmith": ("admin", "John Smith", "js@x.org"),
                                 "rbriggs": ("analyst", "Rebecca Briggs", "rb@x.org")}


def test_import_is_all_or_nothing(cli, tmp_path):
    cli("users", "add", "rbriggs", "--password-stdin", stdin="pw\n")
    config = tmp_path / "config.yaml"
    config.write_text("credentials:\n  usernames:\n    new1: {password: a}\n    rbriggs: {password: b}\n")
    result = cli("users", "import", str(config))
    assert (result.returncode, result.stderr) == (2, "error: User 'rbriggs' already exists.\n")
    assert set(users_in(cli.url)) == {"rbriggs"}
