"""Users page (admins only): the accounts, and adding, changing, resetting, unlocking, deactivating them."""

import pandas as pd
import streamlit as st

import ui
from chatbot import accounts, resources
from chatbot.errors import ChatbotError
from chatbot.models import ROLES

TABLE_CONFIG = {
    "username": st.column_config.TextColumn("Username", width="small"),
    "name": st.column_config.TextColumn("Name"),
    "role": st.column_config.TextColumn("Role", width="small"),
    "provider": st.column_config.TextColumn("Sign-in", width="small", help="password, or the single sign-on provider"),
    "last_login": st.column_config.DatetimeColumn("Last login", format="YYYY-MM-DD HH:mm"),
    "locked_until": st.column_config.DatetimeColumn("Locked until", format="YYYY-MM-DD HH:mm:ss",
                                                    help="After too many failed logins (UTC)"),
    "active": st.column_config.CheckboxColumn("Active", width="small"),
}

actor = ui.require_actor()
if not actor.is_admin:  # not in an analyst's navigation either; refused here whatever the way in
    st.error("This page is for admins.", icon=":material/block:")
    st.stop()
settings = resources.settings()
db = resources.database(settings.database_url, settings.db_pool_size)
policy = accounts.LoginPolicy.of(settings)


def run(doing: str, operation, *args, done: str, **kwargs) -> None:
    """One admin action in one transaction; its outcome is shown after the rerun that redraws the table."""
    try:
        with db.begin() as session:
            secret = operation(actor, *args, session=session, **kwargs)
    except ChatbotError as exc:
        ui.show_error(exc, doing=doing)
        return
    st.session_state["users_notice"] = done
    if secret:
        st.session_state["users_secret"] = secret
    st.rerun()


st.title("Users")
if notice := st.session_state.pop("users_notice", None):
    st.success(ui.plain_text(notice), icon=":material/check_circle:")
if secret := st.session_state.pop("users_secret", None):
    st.caption("Their one-time password, shown only now: pass it on privately. They choose their own at first login.")
    st.code(secret, language=None)

with db.begin() as session:
    rows = accounts.list_accounts(session=session)
st.dataframe(pd.DataFrame([row.__dict__ for row in rows], columns=list(TABLE_CONFIG)), key="users_table",
             hide_index=True, column_config=TABLE_CONFIG)

with st.expander("Add a user", icon=":material/person_add:"):
    with st.form("users_add", clear_on_submit=True):
        username = st.text_input("Username", key="users_add_username")
        name = st.text_input("Full name", key="users_add_name")
        email = st.text_input("Email", key="users_add_email")
        role = st.selectbox("Role", ROLES, key="users_add_role")
        added = st.form_submit_button("Add user")
    if added:
        run("adding the user", accounts.add_user, username, policy=policy, role=role, name=name or None,
            email=email or None, done=f"Added {username.strip().lower()} ({role}).")

st.subheader("Change a user")
picked = st.selectbox("User", [row.username for row in rows], key="users_pick", index=None,
                      placeholder="Choose a user")
user = next((row for row in rows if row.username == picked), None)
if user is not None:
    role_col, action_col = st.columns([1, 2])
    new_role = role_col.selectbox("Role", ROLES, index=ROLES.index(user.role), key="users_role")
    if role_col.button("Change role", key="users_set_role", disabled=new_role == user.role):
        run("changing the role", accounts.set_role, user.username, new_role, done=f"{user.username} is now {new_role}.")
    with action_col:
        if user.provider == "password" and st.button("Reset password", key="users_reset",
                                                     icon=":material/password:"):
            run("resetting the password", accounts.reset_password, user.username, policy=policy,
                done=f"Reset the password of {user.username}.")
        if user.locked_until and st.button("Unlock", key="users_unlock", icon=":material/lock_open:"):
            run("unlocking", accounts.unlock, user.username, done=f"Unlocked {user.username}.")
        if user.active and st.button("Deactivate", key="users_deactivate", icon=":material/person_off:",
                                     help="Blocks their logins and ends their sessions; their conversations stay."):
            run("deactivating", accounts.deactivate, user.username, done=f"Deactivated {user.username}.")
        if not user.active and st.button("Reactivate", key="users_reactivate", icon=":material/person:"):
            run("reactivating", accounts.reactivate, user.username, done=f"Reactivated {user.username}.")
