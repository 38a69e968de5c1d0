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
from chatbot.__main__ import main

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
                "--password-stdin", stdin="staple orbit canyon\n")
    assert (added.returncode, added.stdout) == (0, "added alice (admin)\n")
    listed = cli("users", "list")
    assert listed.stdout == "alice\tadmin\tAlice A\ta@x.org\tlast login never\tpassword\tactive\n"
    assert cli("users", "set-password", "alice", "--password-stdin", stdin="lemon harbor violet\n").returncode == 0
    engine = database.make_engine(cli.url)
    with database.session_factory(engine).begin() as session:
        hashed = store.get_user(session, "alice").password_hash.encode()
    engine.dispose()
    assert bcrypt.checkpw(b"lemon harbor violet", hashed)
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
    cli("users", "add", "bob", "--password-stdin", stdin="staple orbit canyon\n")
    result = cli("users", "add", "BOB", "--role", "admin", "--password-stdin", stdin="lemon harbor violet\n")
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
    cli("users", "add", "rbriggs", "--password-stdin", stdin="staple orbit canyon\n")
    config = tmp_path / "config.yaml"
    config.write_text("credentials:\n  usernames:\n    new1: {password: a}\n    rbriggs: {password: b}\n")
    result = cli("users", "import", str(config))
    assert (result.returncode, result.stderr) == (
        2, f"error: {config}: user 'rbriggs': User 'rbriggs' already exists. Nothing was imported.\n")
    assert set(users_in(cli.url)) == {"rbriggs"}


def test_a_role_that_merely_contains_admin_is_refused_and_imports_nobody(cli, tmp_path):
    """roles: badminton_coach made an admin: the check was the substring test 'admin' in roles."""
    config = tmp_path / "config.yaml"
    config.write_text("credentials:\n  usernames:\n    good: {password: pw-good}\n"
                      "    coach: {password: pw-coach, roles: badminton_coach}\n")
    result = cli("users", "import", str(config))
    assert (result.returncode, result.stderr) == (
        2, f"error: {config}: user 'coach': Unknown role 'badminton_coach': use analyst or admin. "
           "Nothing was imported.\n")
    assert users_in(cli.url) == {}


def test_roles_may_be_one_string_or_a_list_of_known_roles(cli, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("credentials:\n  usernames:\n    ann: {password: pw-a, roles: admin}\n"
                      "    ben: {password: pw-b, roles: [analyst]}\n    cal: {password: pw-c, roles: []}\n"
                      "    dee: {password: pw-d, roles: [analyst, admin]}\n")
    assert cli("users", "import", str(config)).returncode == 0
    assert {user: role for user, (role, _, _) in users_in(cli.url).items()} == {
        "ann": "admin", "ben": "analyst", "cal": "analyst", "dee": "admin"}


GOOD = "credentials:\n  usernames:\n    good: {password: pw-good}\n"


@pytest.mark.parametrize(("text", "message"), [
    (GOOD + "    eve: {password: pw, roles: [analyst, superadmin]}\n",
     "user 'eve': Unknown role 'superadmin': use analyst or admin."),
    (GOOD + "    eve: {password: pw, roles: ''}\n", "user 'eve': Unknown role '': use analyst or admin."),
    (GOOD + "    eve: {password: pw, roles: [admin, 5]}\n", "user 'eve': Its roles must be a role or a list of roles."),
    (GOOD + "    eve: {password: pw, roles: {admin: true}}\n",
     "user 'eve': Its roles must be a role or a list of roles."),
    (GOOD + "    eve:\n", "user 'eve': Its entry must be a mapping of password, name, email and roles."),
    (GOOD + "    eve: hunter2\n", "user 'eve': Its entry must be a mapping of password, name, email and roles."),
    (GOOD + "    eve: [pw, Eve]\n", "user 'eve': Its entry must be a mapping of password, name, email and roles."),
    (GOOD + "    123: {password: pw}\n", "user 123: A username must be text."),
    (GOOD + "    ~: {password: pw}\n", "user None: A username must be text."),
    (GOOD + "    Eve Smith: {password: pw}\n", "user 'Eve Smith': Invalid username 'Eve Smith'"),
    (GOOD + "    eve: {name: Eve}\n", "user 'eve': It has no password."),
    (GOOD + "    eve: {password: 123456}\n", "user 'eve': Its password must be text (put it in quotes)."),
    (GOOD + "    eve: {password: '$2b$12$short'}\n",
     "user 'eve': Its password starts like a bcrypt hash but is not one."),
    (GOOD + f"    eve: {{password: {'p' * 73}}}\n", "user 'eve': Its password is too long (at most 72 bytes)."),
    (GOOD + "    eve: {password: pw, name: [Eve]}\n", "user 'eve': Its name must be text (put it in quotes)."),
    (GOOD + "    eve: {password: pw, first_name: 5}\n", "user 'eve': Its first_name must be text (put it in quotes)."),
    (GOOD + "    eve: {password: pw, email: 2024-01-01}\n", "user 'eve': Its email must be text (put it in quotes)."),
    (GOOD + f"    eve: {{password: pw, name: {'n' * 201}}}\n",
     "user 'eve': The full name is too long (201 characters; at most 200)."),
    (GOOD + "    Good: {password: pw}\n", "user 'good': This username appears twice."),
    ("credentials:\n\tusernames:\n", "is not valid YAML (line 2, column 1): found character '\\t' that cannot start"),
    ("credentials: {usernames: [unclosed\n", "is not valid YAML"),
    ("- credentials\n- usernames\n", "has no credentials.usernames section"),
    ("just some text\n", "has no credentials.usernames section"),
    ("", "has no credentials.usernames section"),
    ("credentials: 5\n", "has no credentials.usernames section"),
    ("credentials:\n  usernames: [good, eve]\n", "has no credentials.usernames section"),
    ("credentials:\n  usernames: {}\n", "has no credentials.usernames section"),
    (b"credentials: \xff\xfe\n", "Cannot read"),
])
def test_a_malformed_import_file_is_one_line_exit_2_and_imports_nobody(tmp_path, monkeypatch, capsys, text, message):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    config = tmp_path / "config.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["users", "import", str(config)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {config}") or error.startswith(f"error: Cannot read {config}")
    assert message in error and error.count("\n") == 1, error
    assert users_in(url) == {}


def test_users_add_refuses_a_weak_password_saying_why(cli):
    result = cli("users", "add", "bob", "--password-stdin", stdin="x\n")
    assert (result.returncode, result.stderr) == (
        2, "error: The password is too short (1 characters): use at least 12.\n")
    result = cli("users", "add", "bob", "--password-stdin", stdin="bob-the-builder-1\n")
    assert "must not contain the user name" in result.stderr
    assert users_in(cli.url) == {}


def test_users_add_without_password_stdin_asks_twice_on_a_terminal(cli, tmp_path):
    """getpass reads the terminal: run under a pseudo-terminal and answer both prompts."""
    import pty

    env = {**os.environ, "DATABASE_URL": cli.url}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command line on the terminal
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "chatbot", "users", "add", "carol"], env)
    output = b""
    for answer in (b"staple orbit canyon\n", b"staple orbit canyon\n"):
        while b"assword: " not in output.split(b"\n")[-1]:
            output += os.read(fd, 1024)
        os.write(fd, answer)
        output += os.read(fd, 1024)
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert b"Repeat the password: " in output and b"added carol (analyst)" in output
    assert set(users_in(cli.url)) == {"carol"}


def test_users_add_without_a_terminal_asks_for_password_stdin(cli):
    result = cli("users", "add", "carol")
    assert (result.returncode, result.stderr) == (
        2, "error: Standard input is not a terminal: pass the password with --password-stdin.\n")


def test_one_time_passwords_unlock_deactivate_reactivate_set_role(cli):
    added = cli("users", "add", "dave", "--one-time")
    assert added.returncode == 0 and "one-time password: " in added.stdout
    cli("users", "add", "root", "--role", "admin", "--password-stdin", stdin="staple orbit canyon\n")
    assert cli("users", "unlock", "dave").stdout == "unlocked dave\n"
    assert cli("users", "deactivate", "dave").stdout == "deactivated dave\n"
    assert cli("users", "list").stdout.splitlines()[0].endswith("\tpassword\tdeactivated")
    assert cli("users", "reactivate", "dave").stdout == "reactivated dave\n"
    assert cli("users", "set-role", "dave", "admin").stdout == "dave is now admin\n"
    reset = cli("users", "reset-password", "dave")
    assert reset.stdout.startswith("one-time password for dave: ")
    assert cli("users", "set-role", "nobody", "admin").stderr == "error: No user 'nobody'.\n"
