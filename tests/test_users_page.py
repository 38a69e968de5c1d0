"""The users page through AppTest on a real database (SQLite file and PostgreSQL): what an admin can
do there, each step audited, and its refusal for an analyst."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from chatbot import accounts, store
from tests.apps import logged_in, shown

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "users.py")


@pytest.fixture
def page_db(db, database_url, monkeypatch):
    """The page's settings pointed at the test database; Streamlit's caches cleared around each test."""
    for name in ("LANGFLOW_URL", "LANGFLOW_FLOW_ID", "LANGFLOW_API_KEY", "CHATBOT_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    st.cache_resource.clear()
    yield db
    st.cache_resource.clear()


def open_page(actor) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["actor"] = actor
    return run(at)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click()
    return run(at)


def pick(at: AppTest, username: str) -> AppTest:
    at.selectbox(key="users_pick").select(username)
    return run(at)


def audit(db, users) -> list[tuple[str, str, str]]:
    with db.begin() as session:
        return [tuple(entry[1:]) for entry in store.list_audit(session, users["root"])][::-1]


def test_an_admin_sees_every_user_with_role_sign_in_and_state(page_db, users):
    with page_db.begin() as session:
        store.get_user(session, "bob").active = False
    at = open_page(users["root"])
    [frame] = [d.value for d in at.dataframe]
    assert frame[["username", "role", "provider", "active"]].values.tolist() == [
        ["alice", "analyst", "password", True], ["bob", "analyst", "password", False],
        ["root", "admin", "password", True]]


def test_an_analyst_is_refused_the_page(page_db, users):
    at = open_page(users["alice"])
    assert [e.value for e in at.error] == ["This page is for admins."]
    assert len(at.dataframe) == 0 and len(at.button) == 0


def test_an_admin_adds_a_user_with_a_one_time_password(page_db, users):
    at = open_page(users["root"])
    at.text_input(key="users_add_username").input("Carol")
    at.text_input(key="users_add_name").input("Carol C")
    at.button[0].click()
    at = run(at)
    assert [shown(s.value) for s in at.success] == ["Added carol (analyst)."]
    [secret] = [c.value for c in at.code]
    with page_db.begin() as session:
        outcome = accounts.attempt_login("carol", secret, session=session, address=None,
                                         policy=accounts.LoginPolicy())
        assert outcome.user.must_change_password
    assert audit(page_db, users) == [("root", "user.add", "carol (analyst)")]


def test_an_admin_resets_unlocks_deactivates_reactivates_and_changes_a_role(page_db, users):
    with page_db.begin() as session:
        for _ in range(5):
            accounts.attempt_login("alice", "wrong", session=session, address=None, policy=accounts.LoginPolicy())
    at = pick(open_page(users["root"]), "alice")
    for key in ("users_unlock", "users_reset", "users_deactivate", "users_reactivate"):
        at = pick(click(at, key), "alice")
    at.selectbox(key="users_role").select("admin")
    at = click(run(at), "users_set_role")
    assert audit(page_db, users) == [
        ("root", "user.unlock", "alice"), ("root", "user.password", "alice"), ("root", "user.deactivate", "alice"),
        ("root", "user.reactivate", "alice"), ("root", "user.role", "alice: admin")]
    with page_db.begin() as session:
        alice = store.get_user(session, "alice")
        assert (alice.role, alice.active, alice.locked_until, alice.must_change_password) == ("admin", True, None, True)


def test_the_only_admin_cannot_deactivate_themselves_and_is_told_why(page_db, users):
    at = pick(open_page(users["root"]), "root")
    at = click(at, "users_deactivate")
    assert [shown(e.value) for e in at.error] == [
        "Deactivating failed. You cannot deactivate yourself: ask another admin."]


def test_a_deactivated_users_session_ends_at_their_next_rerun(app_db):
    at = logged_in()
    assert len(at.chat_input) == 1
    with app_db.begin() as session:
        accounts.deactivate(store.Actor(id=0, username="", role="admin"), "alice", session=session)
    at.run()
    assert len(at.chat_input) == 0
    assert [w.value for w in at.warning] == ["Your account is not active any more. Ask an admin."]
    at.run()
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_a_one_time_password_leads_to_choosing_ones_own_first(app_db):
    with app_db.begin() as session:
        given = accounts.reset_password(store.Actor(id=0, username="", role="admin"), "alice", session=session,
                                        policy=accounts.LoginPolicy())
    at = logged_in(password=given)
    assert [t.value for t in at.title] == ["Choose your password"] and len(at.chat_input) == 0
    at.text_input(key="auth_new_password").input("alice")
    at.text_input(key="auth_repeat_password").input("alice")
    at.button[0].click()
    at = run(at)
    assert [shown(e.value) for e in at.error] == ["The password is too short (5 characters): use at least 12."]
    at.text_input(key="auth_new_password").input("violet harbor staple")
    at.text_input(key="auth_repeat_password").input("violet harbor staple")
    at.button[0].click()
    at = run(at)
    assert len(at.chat_input) == 1


def test_only_admins_have_the_users_page_in_the_navigation(app_db):
    """An analyst's st.navigation has no users page: /users is not a page of theirs."""
    with pytest.raises(ValueError, match=r"Known pages: \[[^]]*chat.py'[^]]*history.py'[^]]*replays.py'\]"):
        logged_in().switch_page(PAGE)
    at = logged_in("root")
    at.switch_page(PAGE)
    assert [t.value for t in run(at).title] == ["Users"]
