"""The HTTP server: app.py behind the app's security headers (`streamlit run serve.py`).

Streamlit serves app.py as usual; st.App adds chatbot.headers' Content-Security-Policy to
every answer, so the browser fetches nothing from another host whatever text reaches a page,
and chatbot.signin_routes watches the single sign-on routes (a failed callback says so; signing
out ends the password login too).
"""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from chatbot.config import Settings, load_settings
from chatbot.errors import ConfigError
from chatbot.headers import SecurityHeaders
from chatbot.signin_routes import SignInRoutes

try:
    try:
        SECRETS = dict(st.secrets)
    except FileNotFoundError:
        SECRETS = {}
    SETTINGS = load_settings(secrets=SECRETS, check_engine=False)
except ConfigError:  # app.py shows the bad setting on the page
    SETTINGS = Settings()

app = st.App(Path(__file__).resolve().parent / "app.py", middleware=[
    Middleware(SecurityHeaders, image_hosts=SETTINGS.allowed_image_hosts),
    Middleware(SignInRoutes, password_cookie=SETTINGS.auth_cookie_name),
])
