"""Entry point: page config, settings check, login gate, navigation. Nothing else."""

from pathlib import Path

import streamlit as st

import ui
from chatbot import accounts, auth, resources
from chatbot.config import cookie_key
from chatbot.errors import ChatbotError, ConfigError

HERE = Path(__file__).resolve().parent
# A local icon: a :material/: icon would be fetched from a font CDN, which the CSP refuses.
st.set_page_config(page_title="Notes chat", page_icon=str(HERE / "assets" / "favicon.png"), layout="wide")
st.html(HERE / "assets" / "app.css")
# The app's name, on the login page too; served from static/ (a same-origin URL, not a data: image).
st.logo("/app/static/logo.svg", size="large")
PAGES = [
    st.Page(HERE / "pages" / "chat.py", title="Chat", icon=":material/chat:", url_path="chat", default=True),
    st.Page(HERE / "pages" / "history.py", title="History", icon=":material/history:", url_path="history"),
    st.Page(HERE / "pages" / "replays.py", title="Replays", icon=":material/compare_arrows:", url_path="replays"),
]
# Admins only: not in an analyst's navigation, and the page refuses them itself too.
ADMIN_PAGES = [st.Page(HERE / "pages" / "users.py", title="Users", icon=":material/group:", url_path="users")]


def first_run() -> None:
    """The first run of a browser session: note the page the URL asked for, let Streamlit see
    st.navigation, and run again before drawing anything.

    Until a session has seen st.navigation, widgets get other ids than in later runs. A login
    form drawn in that first run was replaced by the rerun's: a login typed into it (easily,
    while a loaded machine was still busy with the rerun) was lost without a word.
    """
    if "app_pages_known" in st.session_state:
        return
    st.session_state.setdefault("app_asked_for", ui.asked_for())  # unless a page of pages/ noted it
    st.navigation(PAGES + ADMIN_PAGES, position="hidden")
    st.session_state["app_pages_known"] = True
    st.rerun()


def open_page_asked_for(current, pages) -> None:
    """Open the page that the session's first URL named (a bookmark of /history, say).

    Streamlit resolves a first load of /history to the page hash of its legacy pages/ mode,
    which st.navigation does not know, so it runs the default page instead.
    """
    path, query = st.session_state.pop("app_asked_for", ("", {}))
    asked = [p for p in pages if p.url_path and path.rstrip("/").endswith("/" + p.url_path)]
    if asked and asked[0].url_path != current.url_path:
        st.switch_page(asked[0], query_params=query)


def stop() -> None:
    """End this run without showing a page. st.navigation must still be called: without it
    Streamlit falls back to serving pages/ directly, which would bypass the login gate."""
    ui.rerun_on_reconnect()  # last on the page: a form's button stays the first
    st.navigation(PAGES, position="hidden")
    st.stop()


first_run()
try:
    settings = resources.settings()
    db = resources.database(settings.database_url, settings.db_pool_size)
    resources.replay_worker(settings.database_url, settings.db_pool_size, settings.replay_concurrency,
                            enabled=settings.replay_worker)
except ConfigError as exc:
    st.title("The app is not configured correctly")
    st.error(f"Setting **{exc.setting}**: {str(exc).split(': ', 1)[1]}", icon=":material/settings:")
    st.info("Fix the setting in the environment or in `.streamlit/secrets.toml`, then reload this page.")
    stop()
except ChatbotError as exc:
    st.title("The app cannot start")
    ui.show_error(exc, doing="opening the database")
    stop()

if settings.password_login and auth.needs_first_admin(db):
    auth.first_admin_form(db, auth.setup_token(cookie_key(settings)), accounts.LoginPolicy.of(settings))
    stop()

actor = auth.login(db, settings)
if actor is None:
    stop()
st.session_state["actor"] = actor

pages = PAGES + (ADMIN_PAGES if actor.is_admin else [])
page = st.navigation(pages)
open_page_asked_for(page, pages)
with st.sidebar:
    st.caption(f"Signed in as **{ui.plain_text(actor.name)}** ({actor.role})")
    auth.logout_button(settings)
ui.rerun_on_reconnect()  # in the main area: no script in the sidebar, where titles are shown
page.run()
