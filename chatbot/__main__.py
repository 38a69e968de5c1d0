"""Command line: python -m chatbot users add|list|set-password|reset-password|set-role|unlock|deactivate|
reactivate|remove|import, export, and replay. The users commands are chatbot.accounts' operations, as on the
users page; replay makes a replay of a saved view and runs it, or runs the queued replays (a scheduler's worker)."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import re
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from chatbot import accounts, export, history, store
from chatbot import db as database
from chatbot.config import NOTES, Settings, load_settings, read_secrets_file
from chatbot.errors import ChatbotError, ConfigError, InputError, NotFoundError
from chatbot.flows import FlowDirectory, Route, parse_tweaks
from chatbot.langflow import LangflowClient, make_http_session
from chatbot.logs import configure_logging
from chatbot.models import REPLAY_MODES, ROLES
from chatbot.notes import NotesEngine, NotesIndex
from chatbot.replays import jobs
from chatbot.replays.worker import ReplayWorker

EXIT_USAGE = 2
EXPORT_FORMATS = {"csv": "CSV", "xlsx": "Excel", "json": "JSON", "md": "Markdown", "parquet": "Parquet",
                  "eval-jsonl": "eval-jsonl", "eval-csv": "eval-csv"}  # the last two: evaluation sets
# The command line runs as the operator: it sees every user's conversations (deleted ones excepted).
OPERATOR = store.Actor(id=0, username="", role="admin", name="command line")
IMPORTED_TEXT_FIELDS = ("password", "name", "first_name", "last_name", "email")
TARGET_KINDS = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket")]
BCRYPT_HASH = re.compile(r"^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr and exit 2, like every other error here."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(secrets=read_secrets_file(), check_engine=False)
        engine = database.make_engine(settings.database_url, pool_size=settings.db_pool_size)
        database.migrate(engine)
        args.policy, args.settings = accounts.LoginPolicy.of(settings), settings
        return args.run(args, database.session_factory(engine))
    except ChatbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m chatbot", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    users = commands.add_parser("users", help="manage who can log in").add_subparsers(required=True, metavar="ACTION")

    add = users.add_parser("add", help="add a user")
    add.add_argument("username")
    add.add_argument("--role", default="analyst", help="analyst (default) or admin")
    add.add_argument("--name")
    add.add_argument("--email")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (keeps it out of the shell history); "
                          "without it the password is asked twice on the terminal")
    add.add_argument("--one-time", action="store_true",
                     help="make up a one-time password and print it; the user chooses their own at first login")
    add.set_defaults(run=_users_add)

    users.add_parser("list", help="list users: role, sign-in, last login, locked, active").set_defaults(
        run=_users_list)

    password = users.add_parser("set-password", help="set a user's password (and unlock them)")
    password.add_argument("username")
    password.add_argument("--password-stdin", action="store_true",
                          help="read the password from standard input; without it, asked twice on the terminal")
    password.set_defaults(run=_users_set_password)

    reset = users.add_parser("reset-password", help="give a user a one-time password (printed) and unlock them")
    reset.add_argument("username")
    reset.set_defaults(run=_users_reset_password)

    role = users.add_parser("set-role", help="make a user an analyst or an admin")
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(run=_users_set_role)

    for action, text in (("unlock", "end a user's lock after failed logins"),
                         ("deactivate", "block a user's logins and end their sessions (conversations stay)"),
                         ("reactivate", "let a deactivated user log in again")):
        command = users.add_parser(action, help=text)
        command.add_argument("username")
        command.set_defaults(run=_users_toggle, action=action)

    remove = users.add_parser("remove", help="remove a user and their conversations")
    remove.add_argument("username")
    remove.set_defaults(run=_users_remove)

    imports = users.add_parser("import", help="import users from a streamlit-authenticator config.yaml")
    imports.add_argument("config")
    imports.set_defaults(run=_users_import)

    exports = commands.add_parser("export", help="export every user's conversations, or one user's, to a file")
    exports.add_argument("--format", required=True, choices=list(EXPORT_FORMATS), type=str.lower)
    exports.add_argument("--user", default="", help="only this user's conversations")
    exports.add_argument("--since", help="first day, YYYY-MM-DD (UTC)")
    exports.add_argument("--until", help="last day, YYYY-MM-DD (UTC)")
    exports.add_argument("--search", default="", help="the history page's search syntax: words, \"phrases\", "
                         "prefix*, -word, OR, tag: fb: status: user: flow: version: after: before: latency>")
    exports.add_argument("--out", required=True, type=Path, help="the file to write (replaced only when complete)")
    exports.set_defaults(run=_export)

    replay = commands.add_parser(
        "replay", help="ask a saved view's questions again of a flow, in the foreground; or, with 'worker', "
                       "run the replays queued on the app's Replays page (for a scheduler)")
    replay.add_argument("worker", nargs="?", choices=["worker"],
                        help="run queued replays until stopped (SIGTERM, Ctrl-C); with --once, until none waits")
    replay.add_argument("--once", action="store_true", help="worker: run what waits, then exit")
    replay.add_argument("--view", help="the saved view whose questions to replay (one the user can open)")
    replay.add_argument("--flow", help="the flow to ask: its label or id in the catalog, or 'notes'")
    replay.add_argument("--user", help="whose replay it is: only conversations they can see are replayed")
    replay.add_argument("--mode", choices=REPLAY_MODES, default="context",
                        help="context (default): ask each conversation's earlier questions first in a fresh "
                             "session; questions: the question alone")
    replay.add_argument("--tweaks", default="", help='JSON tweaks by component id, e.g. \'{"Model-x1": '
                        '{"temperature": 0.2}}\'')
    replay.set_defaults(run=_replay)
    return parser


def _read_password(args) -> str:
    """The password from standard input (--password-stdin), or asked twice on a terminal."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InputError("No password given on standard input.")
        return password
    if not sys.stdin.isatty():
        raise InputError("Standard input is not a terminal: pass the password with --password-stdin.")
    password = getpass.getpass("Password: ")
    if password != getpass.getpass("Repeat the password: "):
        raise InputError("The two passwords differ. Nothing was changed.")
    return password


def _users_add(args, db) -> int:
    password = None if args.one_time else _read_password(args)
    with db.begin() as session:
        given = accounts.add_user(OPERATOR, args.username, session=session, policy=args.policy, role=args.role,
                                  name=args.name, email=args.email, password=password)
    print(f"added {args.username.strip().lower()} ({args.role})")
    if given:
        print(f"one-time password: {given}  (they choose their own at first login)")
    return 0


def _users_list(args, db) -> int:
    with db.begin() as session:
        for user in accounts.list_accounts(session=session):
            last = user.last_login.strftime("%Y-%m-%d %H:%M") if user.last_login else "never"
            state = "active" if user.active else "deactivated"
            locked = f"\tlocked until {user.locked_until:%Y-%m-%d %H:%M:%S} UTC" if user.locked_until else ""
            print(f"{user.username}\t{user.role}\t{user.name}\t{user.email}\tlast login {last}\t"
                  f"{user.provider}\t{state}{locked}")
    return 0


def _users_set_password(args, db) -> int:
    password = _read_password(args)
    with db.begin() as session:
        accounts.reset_password(OPERATOR, args.username, session=session, policy=args.policy, password=password)
    print(f"password set for {args.username.strip().lower()}")
    return 0


def _users_reset_password(args, db) -> int:
    with db.begin() as session:
        given = accounts.reset_password(OPERATOR, args.username, session=session, policy=args.policy)
    print(f"one-time password for {args.username.strip().lower()}: {given}  (they choose their own at first login)")
    return 0


def _users_set_role(args, db) -> int:
    with db.begin() as session:
        accounts.set_role(OPERATOR, args.username, args.role, session=session)
    print(f"{args.username.strip().lower()} is now {args.role}")
    return 0


def _users_toggle(args, db) -> int:
    with db.begin() as session:
        getattr(accounts, args.action)(OPERATOR, args.username, session=session)
    print(f"{args.action.removesuffix('e')}ed {args.username.strip().lower()}")
    return 0


def _users_remove(args, db) -> int:
    with db.begin() as session:
        store.remove_user(session, args.username)
    print(f"removed {args.username.lower()}")
    return 0


def _users_import(args, db) -> int:
    users = _authenticator_users(args.config)  # every entry checked before anything is written
    with db.begin() as session:  # all or nothing
        for user in users:
            try:
                store.create_user(session, **user)
            except InputError as exc:
                raise _refused(args.config, user["username"], str(exc)) from None
    print(f"imported {len(users)} users")
    return 0


def _authenticator_users(path: str) -> list[dict]:
    """The users of a streamlit-authenticator config.yaml as ``store.create_user`` arguments."""
    config = _read_yaml(path)
    credentials = config.get("credentials") if isinstance(config, dict) else None
    users = credentials.get("usernames") if isinstance(credentials, dict) else None
    if not isinstance(users, dict) or not users:
        raise InputError(f"{path} has no credentials.usernames section (a mapping of usernames to users).")
    checked = [_imported_user(path, username, entry) for username, entry in users.items()]
    seen = set()
    for user in checked:
        if user["username"] in seen:
            raise _refused(path, user["username"], "This username appears twice.")
        seen.add(user["username"])
    return checked


def _read_yaml(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise InputError(f"Cannot read {path}: it is not UTF-8 text.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise InputError(f"{path} is not valid YAML{where}: {problem}.") from None


def _imported_user(path: str, username, entry) -> dict:
    """One user's entry checked: text where text belongs, known roles only, a usable password."""
    if not isinstance(username, str):
        raise _refused(path, username, "A username must be text.")
    if not isinstance(entry, dict):
        raise _refused(path, username, "Its entry must be a mapping of password, name, email and roles.")
    for field in IMPORTED_TEXT_FIELDS:
        if entry.get(field) is not None and not isinstance(entry[field], str):
            raise _refused(path, username, f"Its {field} must be text (put it in quotes).")
    password = entry.get("password") or ""
    problem = _password_problem(password) or _roles_problem(entry.get("roles"))
    if problem:
        raise _refused(path, username, problem)
    try:
        username = store.check_username(username)
    except InputError as exc:
        raise _refused(path, username, str(exc)) from None
    name = entry.get("name") or " ".join(filter(None, [entry.get("first_name"), entry.get("last_name")]))
    role = "admin" if "admin" in _roles(entry.get("roles")) else "analyst"
    return {"username": username, "password": password, "password_hash": password, "role": role,
            "name": name or None, "email": entry.get("email")}


def _password_problem(password: str) -> str | None:
    """Why this password (a bcrypt hash, or a plain password to hash) cannot be imported, if it cannot."""
    if not password.strip():
        return "It has no password."
    if password.startswith("$2"):
        return None if BCRYPT_HASH.match(password) else "Its password starts like a bcrypt hash but is not one."
    if len(password.encode()) > store.BCRYPT_MAX_BYTES:
        return f"Its password is too long (at most {store.BCRYPT_MAX_BYTES} bytes)."
    return None


def _roles(roles) -> list:
    """streamlit-authenticator's roles: a list, or one role as a string; none at all is an analyst."""
    return [] if roles is None else [roles] if isinstance(roles, str) else roles


def _roles_problem(roles) -> str | None:
    roles = _roles(roles)
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        return "Its roles must be a role or a list of roles."
    unknown = [role for role in roles if role not in ROLES]
    return f"Unknown role {unknown[0]!r}: use {' or '.join(ROLES)}." if unknown else None


def _refused(path: str, username, problem: str) -> InputError:
    return InputError(f"{path}: user {username!r}: {problem} Nothing was imported.")


def _export(args, db) -> int:
    """Stream the messages to --out; the file appears only once it is complete."""
    label = EXPORT_FORMATS[args.format]
    _check_target(args.out)  # before the export runs, not after
    filters = history.HistoryFilter(since=_day(args.since, "--since"), until=_day(args.until, "--until"),
                                    search=args.search.strip(), user=args.user.strip().lower())
    for ignored in filters.ignored:
        print(f"note: the search ignored {ignored}", file=sys.stderr)
    with database.readonly_factory(db.kw["bind"]).begin() as session:  # one snapshot, no write lock
        if filters.user:
            store.require_user(session, filters.user)
        if label in history.evaluation.FORMATS:
            written = _write_complete(args.out, lambda out: history.evaluation.write_evaluation(
                session, OPERATOR, filters, label, out))
            print(f"exported {written} answered turns to {args.out}")
            return 0
        rows = history.count_export_rows(session, OPERATOR, filters)
        if label == "Excel" and rows > export.EXCEL_MAX_ROWS:
            raise InputError(f"Excel holds at most {export.EXCEL_MAX_ROWS:,} messages and this export has "
                             f"{rows:,}. Export csv or parquet instead, or narrow it with --since/--until.")
        written = _write_complete(args.out, lambda out: history.write_export(session, OPERATOR, filters, label, out))
    print(f"exported {written} messages to {args.out}")
    return 0


def _day(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {text!r} is not a date: use YYYY-MM-DD.") from None
    if day > history.LAST_DAY:  # 9999-12-31 overflowed computing the end of the day
        raise InputError(f"{option} {text!r} is too late: use a day up to {history.LAST_DAY}.")
    return day


def _write_complete(path: Path, write) -> int:
    """Write a new temporary file next to ``path`` and move it over ``path`` only when complete.

    A failed export leaves no half file and removes its temporary file.
    """
    try:
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror}.") from None
    try:
        with handle:
            written = write(handle)
        _check_target(path)  # again: something may have taken its place while the export ran
        os.replace(handle.name, path)
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return written


def _check_target(path: Path) -> None:
    """Only a regular file may be replaced: never a link's target, a device (as root, /dev/null), a folder."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror}.") from None
    if not stat.S_ISREG(mode):
        kind = next((kind for test, kind in TARGET_KINDS if test(mode)), "not a file")
        raise InputError(f"Refusing to write {path}: it is {kind}, not a regular file. Choose another --out.")


# -- replays ---------------------------------------------------------------------------------------


def _replay(args, db) -> int:
    configure_logging(args.settings.log_level, args.settings.log_format)
    if args.worker:
        if args.view or args.flow or args.user:
            raise InputError("'replay worker' runs the queued replays; it takes no --view, --flow or --user.")
        return _replay_worker(args, db)
    missing = [option for option in ("view", "flow", "user") if not getattr(args, option)]
    if missing:
        raise InputError(f"replay needs {', '.join('--' + m for m in missing)} (or 'replay worker').")
    settings: Settings = args.settings
    flow, label = _catalog_flow(settings, args.flow)
    tweaks = parse_tweaks(args.tweaks) or None
    with db.begin() as session:
        actor = store.Actor.of(store.require_user(session, args.user))
        view = _view_named(session, actor, args.view)
        questions = jobs.questions_from_filters(session, actor, view.filters, limit=settings.replay_max_questions)
        replay = jobs.create_replay(session, actor, questions, flow=flow, flow_label=label,
                                    source=f'view "{view.name}"', mode=args.mode, tweaks=tweaks,
                                    filters=view.filters.to_query_params())
        replay_id, name, total = replay.id, replay.name, replay.total
    print(f"replay {replay_id} “{name}”: {total} questions")
    worker = ReplayWorker(db, _routes(settings), concurrency=settings.replay_concurrency)
    reader = database.readonly_factory(db.kw["bind"])  # each look its own snapshot, never the write lock

    def progress() -> jobs.Progress:
        with reader.begin() as session:
            return jobs.progress(session, actor, replay_id)

    done = _run_in_foreground(worker, replay_id, progress)
    print(f"{done.status}: {done.complete} complete, {done.errors} failed, "
          f"{done.done - done.complete - done.errors} cancelled, of {done.total}")
    return 0


def _run_in_foreground(worker: ReplayWorker, replay_id: int, progress: Callable[[], jobs.Progress]) -> jobs.Progress:
    """Run the replay here, printing its progress, until it ends (some of its questions may be run
    by other workers: the limit is the deployment's). Ctrl-C gives the running ones back."""
    failures: list[Exception] = []
    runner = threading.Thread(target=_catching(worker.run_until_idle, failures), args=(replay_id,), daemon=True)
    runner.start()
    shown = None
    try:
        while True:
            runner.join(1.0)
            now = progress()
            if (now.done, now.status) != shown:
                shown = (now.done, now.status)
                print(f"{now.done}/{now.total} done ({now.errors} failed, {now.running} running)", flush=True)
            if failures:
                raise failures[0]
            if now.status in jobs.FINISHED and not runner.is_alive():
                return now
            if not runner.is_alive():  # the rest runs elsewhere, or a stale claim frees up: try again
                runner = threading.Thread(target=_catching(worker.run_until_idle, failures), args=(replay_id,),
                                          daemon=True)
                runner.start()
    except KeyboardInterrupt:
        worker.stop()
        print("stopped: the replay goes on with the next worker (the app's, or 'replay worker')", file=sys.stderr)
        raise SystemExit(130) from None


def _catching(run: Callable, failures: list[Exception]) -> Callable:
    def caught(*args):
        try:
            run(*args)
        except Exception as exc:  # handed to the main thread, which reports it
            failures.append(exc)
    return caught


def _replay_worker(args, db) -> int:
    settings: Settings = args.settings
    worker = ReplayWorker(db, _routes(settings), concurrency=settings.replay_concurrency)
    if args.once:
        worker.run_until_idle()
        print(f"ran {worker.finished} questions; none waits")
        return 0
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    worker.start()
    print(f"replay worker {worker.name}: {settings.replay_concurrency} at a time; stop with Ctrl-C or SIGTERM",
          flush=True)
    try:
        while not stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    worker.stop()
    print(f"stopped after {worker.finished} questions")
    return 0


def _catalog_flow(settings: Settings, wanted: str) -> tuple[str, str]:
    """(catalog key, label) of --flow: a catalog entry's label or flow id, or 'notes'."""
    text = wanted.strip()
    if text.lower() == NOTES and settings.notes_engine:
        return NOTES, "Notes"
    for entry in settings.langflow_flows:
        if text in (entry.flow, entry.label) or text.lower() == entry.label.lower():
            return entry.flow, entry.label
    names = [entry.label for entry in settings.langflow_flows] + ([NOTES] if settings.notes_engine else [])
    raise NotFoundError(f"No flow {text!r} in the catalog; pick one of: {', '.join(names)}.")


def _view_named(session, actor: store.Actor, name: str) -> history.views.View:
    """The view of that name the actor can open: their own first, then one shared with them."""
    views = history.views.list_views(session, actor)
    found = [view for view in views if view.name == name.strip()]
    if not found:
        names = ", ".join(repr(view.name) for view in views) or "none"
        raise NotFoundError(f"{actor.username} has no saved view {name.strip()!r} (views they can open: {names}).")
    return found[0]


def _routes(settings: Settings) -> Callable[[str], Route]:
    """The engines a replay asks, outside Streamlit: the notes engine (indexed once) or a catalog flow."""
    http, notes = make_http_session(), []

    def client(key: str) -> LangflowClient:
        return LangflowClient(base_url=settings.langflow_url, flow_id=key, api_key=settings.langflow_api_key,
                              timeout=settings.langflow_timeout, http=http)

    directory = FlowDirectory(client) if settings.uses_langflow else None
    lock = threading.Lock()

    def route(key: str) -> Route:
        if key == NOTES:
            with lock:
                notes[:] = notes or [NotesIndex.build(settings.notes_dir)]
            return Route(NotesEngine(notes[0]))
        if not settings.uses_langflow:
            raise ConfigError("LANGFLOW_URL", f"is not set, and this replay asks the Langflow flow {key!r}.")
        entry = settings.flow_entry(key)
        return Route(client(key), key, directory, tweaks=entry.tweaks if entry else {})

    return route


if __name__ == "__main__":
    sys.exit(main())
