"""Entry point: page config, settings check, login gate, navigation. Nothing else."""

from pathlib import Path

import streamlit as st

import ui
from chatbot import auth, resources
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
]


def navigation(position: str = "sidebar"):
    """st.navigation, plus one rerun the first time a browser session gets here.

    Until a session has seen st.navigation, the widgets rendered before it (the login form,
    the cookie component) get other ids than in later runs, and the first login is lost.
    That first run also notes which page the URL asked for (see open_page_asked_for).
    """
    first = "app_pages_known" not in st.session_state
    if first:  # unless a page of pages/ noted it already (ui.require_actor)
        st.session_state.setdefault("app_asked_for", ui.asked_for())
    page = st.navigation(PAGES, position=position)
    if first:
        st.session_state["app_pages_known"] = True
        st.rerun()
    return page


def open_page_asked_for(current) -> None:
    """Open the page that the session's first URL named (a bookmark of /history, say).

    Streamlit resolves a first load of /history to the page hash of its legacy pages/ mode,
    which st.navigation does not know, so it runs the default page instead.
    """
    path, query = st.session_state.pop("app_asked_for", ("", {}))
    asked = [p for p in PAGES if p.url_path and path.rstrip("/").endswith("/" + p.url_path)]
    if asked and asked[0].url_path != current.url_path:
        st.switch_page(asked[0], query_params=query)


def stop() -> None:
    """End this run without showing a page. st.navigation must still be called: without it
    Streamlit falls back to serving pages/ directly, which would bypass the login gate."""
    navigation(position="hidden")
    st.stop()


try:
    settings = resources.settings()
    db = resources.database(settings.database_url, settings.db_pool_size)
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
    auth.first_admin_form(db, auth.setup_token(cookie_key(settings)))
    stop()

actor = auth.login(db, settings)
if actor is None:
    stop()
st.session_state["actor"] = actor

page = navigation()
open_page_asked_for(page)
with st.sidebar:
    st.caption(f"Signed in as **{ui.plain_text(actor.name)}** ({actor.role})")
    auth.logout_button()
page.run()
