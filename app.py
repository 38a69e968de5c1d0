"""Entry point: page config, settings check, login gate, navigation. Nothing else."""

from pathlib import Path

import streamlit as st

import ui
from chatbot import auth, resources
from chatbot.config import cookie_key
from chatbot.errors import ChatbotError, ConfigError

st.set_page_config(page_title="Notes chat", page_icon=":material/forum:", layout="wide")
HERE = Path(__file__).resolve().parent
PAGES = [
    st.Page(HERE / "pages" / "chat.py", title="Chat", icon=":material/chat:", url_path="chat", default=True),
    st.Page(HERE / "pages" / "history.py", title="History", icon=":material/history:", url_path="history"),
]


def navigation(position: str = "sidebar"):
    """st.navigation, plus one rerun the first time a browser session gets here.

    Until a session has seen st.navigation, the widgets rendered before it (the login form,
    the cookie component) get other ids than in later runs, and the first login is lost.
    """
    page = st.navigation(PAGES, position=position)
    if "app_pages_known" not in st.session_state:
        st.session_state["app_pages_known"] = True
        st.rerun()
    return page


def stop() -> None:
    """End this run without showing a page. st.navigation must still be called: without it
    Streamlit falls back to serving pages/ directly, which would bypass the login gate."""
    navigation(position="hidden")
    st.stop()


try:
    settings = resources.settings()
    db = resources.database(settings.database_url)
except ConfigError as exc:
    st.title("The app is not configured correctly")
    st.error(f"Setting **{exc.setting}**: {str(exc).split(': ', 1)[1]}", icon=":material/settings:")
    st.info("Fix the setting in the environment or in `.streamlit/secrets.toml`, then reload this page.")
    stop()
except ChatbotError as exc:
    st.title("The app cannot start")
    ui.show_error(exc, doing="opening the database")
    stop()

if auth.needs_first_admin(db):
    auth.first_admin_form(db, auth.setup_token(cookie_key(settings)))
    stop()

actor = auth.login(db, settings)
if actor is None:
    stop()
st.session_state["actor"] = actor

page = navigation()
with st.sidebar:
    st.caption(f"Signed in as **{actor.name}** ({actor.role})")
    auth.logout_button()
page.run()
