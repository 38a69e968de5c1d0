"""The HTTP server: app.py behind the app's security headers (`streamlit run serve.py`).

Streamlit serves app.py as usual; st.App adds chatbot.headers' Content-Security-Policy to
every answer, so the browser fetches nothing from another host whatever text reaches a page.
"""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from chatbot.config import load_settings
from chatbot.errors import ConfigError
from chatbot.headers import SecurityHeaders

try:
    IMAGE_HOSTS = load_settings(check_engine=False).allowed_image_hosts
except ConfigError:  # app.py shows the bad setting on the page
    IMAGE_HOSTS = frozenset()

app = st.App(Path(__file__).resolve().parent / "app.py",
             middleware=[Middleware(SecurityHeaders, image_hosts=IMAGE_HOSTS)])
