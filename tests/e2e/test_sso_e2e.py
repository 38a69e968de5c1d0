"""Single sign-on in Chromium, through a real OpenID Connect provider (tests/oidc, oidc-provider).

The app runs with an [auth] section naming the provider "acme", SSO_ADMIN_CLAIM=groups=chat-admins
and the password form beside it. People at the provider: ann (in chat-admins), ben and cy.
The browser opens the app at http://localhost:PORT, the address the redirect URI names:
Streamlit keeps the sign-in's state in a cookie of that host.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urljoin

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.e2e.conftest import (
    AppServer,
    ask,
    assert_no_traceback,
    free_port,
    login,
    messages,
    new_context,
    open_history,
    screenshot,
    settle,
    sidebar,
    start_app,
    submit_login,
    table_titles,
)
from tests.oidc_server import ANN, BEN, CY, IdpUser, OidcProvider, auth_secrets, start_provider

pytestmark = pytest.mark.e2e

SIGN_IN = "Sign in with Acme"
# A password user beside the single sign-on ones (made here: the suite's users are not needed).
PASSWORD_USER, PASSWORD = "dana", "violet-harbour-tramline-47"
QUESTION = "How do I find sessions idle in transaction? (ticket ss5521)"


@pytest.fixture(scope="module")
def idp_app(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[tuple[AppServer, OidcProvider]]:
    workdir = tmp_path_factory.mktemp("sso")
    port = free_port()
    redirect_uri = f"http://localhost:{port}/oauth2callback"
    provider = start_provider(workdir, [redirect_uri])
    try:
        # prompt=login: the provider asks for the password at every sign-in (as Okta's and Auth0's
        # docs suggest for shared machines); the default select_account is not one it supports.
        server = start_app(workdir, secrets=auth_secrets(provider, redirect_uri, prompt="login"), port=port,
                           extra_env={"SSO_ADMIN_CLAIM": "groups=chat-admins"}, users=())
        cli(server, "users", "add", PASSWORD_USER, "--password-stdin", stdin=f"{PASSWORD}\n")
    except BaseException:
        provider.stop()
        raise
    yield server, provider
    server.stop()
    provider.stop()


def cli(app: AppServer, *args: str, stdin: str = "") -> str:
    """Run python -m chatbot ... against the app's database; its standard output."""
    result = subprocess.run([sys.executable, "-m", "chatbot", *args], input=stdin, env=app.env, cwd=app.workdir,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def app(idp_app) -> AppServer:
    return idp_app[0]


def base(app: AppServer) -> str:
    return app.base_url.replace("127.0.0.1", "localhost")


def sign_in(page: Page, app: AppServer, user: IdpUser, *, expect_in: bool = True) -> None:
    """Open the app, press "Sign in with Acme", type the password at the provider, come back."""
    page.goto(base(app))
    button = page.get_by_role("button", name=SIGN_IN)
    expect(button).to_be_visible()
    settle(page)
    button.click()
    page.wait_for_url(lambda url: url.startswith("http://127.0.0.1:") and "/interaction/" in url)
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: url.startswith(base(app)))
    if expect_in:
        expect(sidebar(page).get_by_text(f"Signed in as {user.name}")).to_be_visible()
        settle(page)


def database(app: AppServer) -> sqlite3.Connection:
    return sqlite3.connect(app.workdir / "chatbot.db")


def user_row(app: AppServer, email: str) -> tuple | None:
    with database(app) as connection:
        return connection.execute("SELECT username, role, auth_provider, auth_subject, password_hash, active "
                                  "FROM users WHERE email = ?", (email,)).fetchone()


def audit_actions(app: AppServer, username: str) -> list[str]:
    with database(app) as connection:
        return [row[0] for row in connection.execute(
            "SELECT action FROM audit_log JOIN users ON users.id = audit_log.actor_id "
            "WHERE users.username = ? ORDER BY audit_log.id", (username,))]


@pytest.fixture
def second_context(browser: Browser) -> Iterator[BrowserContext]:
    context = new_context(browser)
    yield context
    context.close()


def test_the_login_page_offers_the_provider_beside_the_password_form(page: Page, app: AppServer):
    page.goto(base(app))
    expect(page.get_by_role("button", name=SIGN_IN)).to_be_visible()
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    settle(page)
    assert_no_traceback(page)
    screenshot(page, "sso-login")


def test_a_first_sign_in_makes_an_analyst_who_lands_on_chat_with_an_empty_history(page: Page, app: AppServer):
    assert user_row(app, BEN.email) is None
    sign_in(page, app, BEN)
    expect(sidebar(page).get_by_text(f"Signed in as {BEN.name} (analyst)")).to_be_visible()
    expect(page.get_by_placeholder("Ask a question about your notes")).to_be_visible()
    expect(messages(page)).to_have_count(0)
    expect(sidebar(page).get_by_role("link", name="Users")).to_have_count(0)
    assert user_row(app, BEN.email) == (BEN.email, "analyst", "acme", BEN.sub, None, 1)
    assert audit_actions(app, BEN.email) == ["user.add", "sso.login"]
    open_history(page)
    table_titles(page, [])
    assert_no_traceback(page)


def test_the_group_claim_makes_an_admin(page: Page, app: AppServer):
    sign_in(page, app, ANN)
    expect(sidebar(page).get_by_text(f"Signed in as {ANN.name} (admin)")).to_be_visible()
    sidebar(page).get_by_role("link", name="Users").click()  # the users page: admins only
    # ben signed in before: listed, with the provider (the grid's cells are its accessible table)
    cells = page.locator('td[role="gridcell"]')
    expect(cells.filter(has_text=BEN.email).first).to_be_attached()
    expect(cells.filter(has_text="acme").first).to_be_attached()
    open_history(page)
    expect(page.get_by_role("tab", name="Audit log")).to_be_visible()  # admins only
    assert user_row(app, ANN.email)[:3] == (ANN.email, "admin", "acme")


def test_the_users_list_shows_the_provider(page: Page, app: AppServer):
    sign_in(page, app, BEN)
    listed = {line.split("\t")[0]: line.split("\t") for line in cli(app, "users", "list").splitlines()}
    assert "acme" in listed[BEN.email]
    assert "acme" not in listed[PASSWORD_USER]


def test_a_second_user_sees_none_of_the_first_users_conversations(page: Page, second_context: BrowserContext,
                                                                    app: AppServer):
    sign_in(page, app, ANN)
    ask(page, QUESTION)
    other = second_context.new_page()
    sign_in(other, app, BEN)
    expect(sidebar(other).get_by_text("ticket ss5521")).to_have_count(0)
    open_history(other)
    assert "ss5521" not in " ".join(table_titles(other, []))
    other.goto(page.url)  # ann's conversation by its address: not ben's
    settle(other)
    expect(messages(other)).to_have_count(0)
    assert QUESTION not in other.inner_text("body")


def test_logout_ends_the_single_sign_on_the_password_cookie_and_the_providers_session(page: Page, idp_app):
    app, provider = idp_app
    sign_in(page, app, BEN)
    page.context.add_cookies([{"name": "chatbot_auth", "value": "a-password-login", "url": base(app)}])
    visited: list[str] = []
    page.on("request", lambda request: visited.append(request.url))
    sidebar(page).get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name=SIGN_IN)).to_be_visible()
    assert any(url.startswith(f"{provider.issuer}/session/end") for url in visited), visited
    names = {cookie["name"] for cookie in page.context.cookies()}
    assert not {name for name in names if name.startswith("_streamlit_user")} and "chatbot_auth" not in names
    page.reload()
    expect(page.get_by_role("button", name=SIGN_IN)).to_be_visible()
    expect(sidebar(page).get_by_text("Signed in as")).to_have_count(0)
    assert_no_traceback(page)


def test_password_login_still_works_and_its_logout_is_clean(page: Page, app: AppServer):
    login(page, PASSWORD_USER, PASSWORD, base_url=base(app))
    sidebar(page).get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You are logged out.")).to_be_visible()


def test_the_password_form_does_not_know_a_single_sign_on_user(page: Page, app: AppServer):
    sign_in(page, app, BEN)
    page.context.clear_cookies()
    page.goto(base(app))
    submit_login(page, BEN.email, BEN.password)
    expect(page.get_by_text("incorrect")).to_be_visible()
    expect(sidebar(page).get_by_text("Signed in as")).to_have_count(0)
    assert_no_traceback(page)


def test_a_forged_callback_is_refused_with_a_clear_message(page: Page, app: AppServer):
    page.goto(f"{base(app)}/oauth2callback?code=forged-code&state=forged-state")
    expect(page.get_by_text("Single sign-on did not complete")).to_be_visible()
    expect(page.get_by_role("button", name=SIGN_IN)).to_be_visible()
    assert "sso=" not in page.url
    assert_no_traceback(page)


def test_a_tampered_code_is_refused_with_a_clear_message(page: Page, app: AppServer):
    """The provider's answer comes back with the right state and an altered code."""

    def tamper(route: Route) -> None:
        # Chromium follows redirects without asking the route, so walk the provider's two
        # redirects here (with the context's cookies) and hand the browser an altered callback.
        sent = route.fetch(max_redirects=0)  # the login form's answer: back to the authorization
        resumed = page.context.request.get(urljoin(route.request.url, sent.headers["location"]), max_redirects=0)
        callback = resumed.headers["location"]
        assert callback.startswith(base(app) + "/oauth2callback?") and "code=" in callback
        route.fulfill(status=303, headers={"Location": callback.replace("code=", "code=tampered", 1)})

    page.route(lambda url: "/interaction/" in url and url.endswith("/login"), tamper)
    sign_in(page, app, CY, expect_in=False)
    expect(page.get_by_text("Single sign-on did not complete")).to_be_visible()
    expect(sidebar(page).get_by_text("Signed in as")).to_have_count(0)
    assert user_row(app, CY.email) is None
    assert_no_traceback(page)


def test_a_deactivated_user_is_refused(page: Page, app: AppServer):
    sign_in(page, app, CY)
    with database(app) as connection:
        connection.execute("UPDATE users SET active = 0 WHERE email = ?", (CY.email,))
    page.context.clear_cookies()
    sign_in(page, app, CY, expect_in=False)
    expect(page.get_by_text(f"Your account ({CY.email}) is deactivated")).to_be_visible()
    expect(sidebar(page).get_by_text("Signed in as")).to_have_count(0)
    assert_no_traceback(page)
