"""History page: browse, search and export past conversations, usage numbers, and (admins) the audit log."""

import datetime as dt
import math
import tempfile
import time

import pandas as pd
import streamlit as st

import ui
from chatbot import export, history, resources, store
from chatbot.errors import ChatbotError
from chatbot.history import FEEDBACK_LABELS, SORT_LABELS, HistoryFilter

PAGE_SIZE = 50
OLDEST = dt.date(2000, 1, 1)
VERSIONS_KEPT_S = 60  # the flow version filter's options are read at most this often (an admin's read every answer)
TABLE_CONFIG = {
    "title": st.column_config.TextColumn("Title", width="medium"),
    "owner": st.column_config.TextColumn("Owner", width="small"),
    "started": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD", width="small"),
    "last_activity": st.column_config.DatetimeColumn("Last activity", format="YYYY-MM-DD HH:mm"),
    "messages": st.column_config.NumberColumn("Messages", width="small"),
    "thumbs_up": st.column_config.NumberColumn("👍", width="small"),
    "thumbs_down": st.column_config.NumberColumn("👎", width="small"),
    "last_status": st.column_config.TextColumn("Last answer", width="small"),
    "engine": st.column_config.TextColumn("Engine or flow", width="small"),
    "flow_version": st.column_config.TextColumn("Flow version", width="small",
                                                help="The flow and version of the latest answer"),
}

actor = ui.require_actor()
settings = resources.settings()
db = resources.database(settings.database_url, settings.db_pool_size)
readonly = resources.readonly_database(settings.database_url, settings.db_pool_size)

st.title("History")

# -- filters: every widget is bound to the URL, so a filtered view can be bookmarked -----
def flow_version_options() -> list[str]:
    """'' and every flow version that answered the actor: kept a minute, not read on every click, since
    an admin's means reading every answer (0.3 s at a million messages)."""
    kept = st.session_state.get("history_versions")
    if kept is None or kept[0] != actor.id or time.monotonic() - kept[1] > VERSIONS_KEPT_S:
        with readonly.begin() as session:
            kept = (actor.id, time.monotonic(), ["", *history.flow_versions(session, actor)])
        st.session_state["history_versions"] = kept
    return kept[2]


version_options = flow_version_options()
with readonly.begin() as session:
    engine_options = ["", *history.engines(session, actor)]
    user_options = ["", *(u.username for u in store.list_users(session))] if actor.is_admin else [""]

search_col, from_col, to_col = st.columns([3, 1, 1])
# max_chars also cuts a longer search from a link, and the URL then holds the cut search.
linked_search = st.query_params.get("history_search", "")
search = search_col.text_input("Search messages", key="history_search", bind="query-params",
                               max_chars=history.MAX_SEARCH_CHARS, placeholder='words, or "a phrase"')
if len(linked_search) > history.MAX_SEARCH_CHARS:
    st.warning(f"The search in this link was {len(linked_search):,} characters long; it was shortened to "
               f"its first {history.MAX_SEARCH_CHARS:,}.", icon=":material/content_cut:")
elif len(search) >= history.MAX_SEARCH_CHARS:  # the browser cuts a longer paste without a word
    st.warning(f"A search holds at most {history.MAX_SEARCH_CHARS:,} characters: the rest was cut.",
               icon=":material/content_cut:")
since = from_col.date_input("From", value=None, min_value=OLDEST, key="history_from", bind="query-params")
until = to_col.date_input("To", value=None, min_value=OLDEST, key="history_to", bind="query-params")
row = st.columns(6 if actor.is_admin else 5, vertical_alignment="bottom")
feedback = row[0].selectbox("Feedback", list(FEEDBACK_LABELS), format_func=FEEDBACK_LABELS.get,
                            key="history_feedback", bind="query-params")
engine = row[1].selectbox("Engine or flow", engine_options, format_func=lambda e: e or "All",
                          key="history_engine", bind="query-params")
version = row[2].selectbox("Flow version", version_options, format_func=lambda v: v or "All",
                           key="history_version", bind="query-params",
                           help="Only conversations with an answer from this version of a flow.")
sort = row[3].selectbox("Sort by", list(SORT_LABELS), format_func=SORT_LABELS.get,
                        key="history_sort", bind="query-params")
errors_only = row[4].checkbox("Errors only", key="history_errors", bind="query-params",
                              help="Only conversations with an answer that failed.")
user, deleted = "", False
if actor.is_admin:
    user = row[5].selectbox("User", user_options, format_func=lambda u: u or "Everyone",
                            key="history_user", bind="query-params")
    deleted = st.checkbox("Deleted conversations only (to purge them)", key="history_deleted", bind="query-params")

try:
    filters = HistoryFilter(since=since, until=until, search=search.strip(), feedback=feedback, errors_only=errors_only,
                            engine=engine or "", version=version or "", user=user or "", deleted=deleted,
                            sort=sort)
except ChatbotError as exc:
    ui.show_error(exc, doing="filtering")
    st.stop()


def forget_selection() -> None:
    """Another page, filter or conversation gone: nothing selected, nothing being deleted."""
    st.session_state["history_table"] = {"selection": {"rows": [], "columns": [], "cells": []}}
    for key in ("history_open", "history_confirm"):
        st.session_state.pop(key, None)


def turn_page(step: int) -> None:
    st.session_state["history_page"] += step
    forget_selection()


if st.session_state.get("history_seen") != filters:  # new filters: back to the first page
    st.session_state["history_seen"] = filters
    st.session_state["history_page"] = 0
    st.session_state.pop("history_export_rows", None)
    forget_selection()


# -- downloads: generated only when clicked, in a thread of their own -----------------------
def export_file(label: str):
    def generate() -> bytes:
        with db.begin() as session:
            history.record_export(session, actor, filters)
        with tempfile.TemporaryFile() as spool, readonly.begin() as session:
            history.write_export(session, actor, filters, label, spool)
            spool.seek(0)
            return spool.read()

    return generate


def export_size() -> int:
    """How many messages the downloads hold: counted once per set of filters (it reads every message)."""
    if "history_export_rows" not in st.session_state:
        with readonly.begin() as session:
            st.session_state["history_export_rows"] = history.count_export_rows(session, actor, filters)
    return st.session_state["history_export_rows"]


def export_buttons(rows: int) -> None:
    st.caption(f"Download the {rows:,} messages of these conversations:")
    too_many = rows > export.EXCEL_MAX_ROWS
    for column, fmt in zip(st.columns(len(export.FORMATS)), export.FORMATS.values(), strict=True):
        name = export.safe_filename(f"history {filters.user} {dt.date.today()}", fmt.extension)
        column.download_button(fmt.label, data=export_file(fmt.label), file_name=name, mime=fmt.mime,
                               key=f"history_export_{fmt.extension}", on_click="ignore",
                               disabled=too_many and fmt.label == "Excel", width="stretch")
    if too_many:
        st.warning(f"Excel holds at most 1,048,576 rows and this export has {rows:,} messages: "
                   "download CSV or Parquet instead, or narrow the filters.", icon=":material/table_view:")


# -- one conversation ------------------------------------------------------------------------
def open_transcript(conversation_id: int) -> history.Transcript | None:
    """The selected conversation, read (and, for an admin reading another's, audited) once per selection."""
    opened = st.session_state.get("history_open")
    if opened is None or opened.id != conversation_id:
        try:
            with db.begin() as session:
                opened = history.transcript(session, actor, conversation_id)
        except ChatbotError as exc:
            ui.show_error(exc, doing="opening the conversation")
            return None
        st.session_state["history_open"] = opened
    return opened


def remove(action: str, conversation_id: int) -> None:
    try:
        with db.begin() as session:
            if action == "purge":
                store.purge_conversation(session, actor, conversation_id)
            else:
                store.delete_conversation(session, actor, conversation_id)
    except ChatbotError as exc:
        ui.show_error(exc, doing="deleting the conversation" if action == "delete" else "purging the conversation")
        return
    forget_selection()
    st.session_state.pop("history_export_rows", None)
    st.toast("Conversation purged for good." if action == "purge" else "Conversation deleted.")


def message_details(m: history.TranscriptMessage) -> str:
    """'2024-05-01 09:01:00 UTC · Notes RAG v7 · gpt-4o-mini · 1.2 s · first token 300 ms · complete · 👎
    “wrong region”'."""
    parts = [m.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")]
    if m.role == "assistant":
        parts += [ui.message_caption(m), m.status]
    if m.version > 1 or not m.current:  # regenerated or edited: every version is kept
        parts.append(f"version {m.version}" + ("" if m.current else " (replaced by a later one)"))
    if m.feedback_score is not None:
        comment = " ".join((m.feedback_comment or "").split())
        parts.append(FEEDBACK_LABELS["up" if m.feedback_score else "down"] + (f" “{comment}”" if comment else ""))
    return ui.plain_text(" · ".join(p for p in parts if p))


def show_transcript(chat: history.Transcript) -> None:
    st.divider()
    st.subheader(ui.plain_text(chat.title), anchor=False)
    gone = " · deleted by its owner" if chat.deleted else ""
    st.caption(f"{chat.owner} · started {chat.created_at:%Y-%m-%d %H:%M} UTC · {len(chat.messages)} messages{gone}")
    buttons = st.columns(4)
    buttons[0].download_button("Transcript (Markdown)", data=chat.markdown, file_name=export.safe_filename(chat.title, "md"),
                               mime="text/markdown", key="history_transcript_md", on_click="ignore")
    buttons[1].download_button("Transcript (JSON)", data=chat.json, file_name=export.safe_filename(chat.title, "json"),
                               mime="application/json", key="history_transcript_json", on_click="ignore")
    if chat.owner == actor.username and not chat.deleted:
        if buttons[2].button("Delete", key="history_delete", icon=":material/delete:"):
            st.session_state["history_confirm"] = ("delete", chat.id)
    if actor.is_admin and buttons[3].button("Purge", key="history_purge", icon=":material/delete_forever:"):
        st.session_state["history_confirm"] = ("purge", chat.id)
    confirm_removal(chat.id)
    for m in chat.messages:
        with st.chat_message(m.role):
            ui.message_body(m, admin=actor.is_admin)
            st.caption(message_details(m))


def confirm_removal(conversation_id: int) -> None:
    action = st.session_state.get("history_confirm", ("", None))
    if action[1] != conversation_id:
        return
    if action[0] == "purge":
        st.warning("Purge this conversation for good? Its messages and feedback are erased; this cannot be undone.")
        label = "Yes, purge it"
    else:
        st.warning("Delete this conversation? It disappears from your lists, searches and exports.")
        label = "Yes, delete it"
    yes, no = st.columns([1, 4])
    yes.button(label, key="history_confirm_yes", type="primary", on_click=remove, args=(action[0], conversation_id))
    no.button("Cancel", key="history_confirm_no", on_click=st.session_state.pop, args=("history_confirm", None))


def milliseconds(value: int | None) -> str:
    return "–" if value is None else ui.duration(value)


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


# -- the tabs: only the open one runs ---------------------------------------------------------
labels = ["Conversations", "Usage", *(["Audit log"] if actor.is_admin else [])]
tabs = st.tabs(labels, key="history_tab", bind="query-params", on_change="rerun")

if tabs[0].open:
    with tabs[0]:
        page = st.session_state["history_page"]
        with readonly.begin() as session:
            frame, matches = history.list_history(session, actor, filters, page=page, page_size=PAGE_SIZE)
        pages = max(1, math.ceil(matches / PAGE_SIZE))
        if page >= pages:
            turn_page(pages - 1 - page)
            st.rerun()
        st.caption(f"{matches.label()} conversations match")
        export_buttons(export_size())
        shown = [c for c in history.TABLE_COLUMNS if c != "id" and (c != "owner" or actor.is_admin)]
        picked = st.dataframe(frame, key="history_table", on_select="rerun", selection_mode="single-row",
                              hide_index=True, column_config=TABLE_CONFIG, column_order=shown, width="stretch")
        back, where, forward = st.columns([1, 4, 1], vertical_alignment="center")
        back.button("Previous", key="history_prev", disabled=page == 0, on_click=turn_page, args=(-1,),
                    icon=":material/chevron_left:", width="stretch")
        where.caption(f"Page {page + 1} of {pages}{'+' if matches.at_least else ''}")
        forward.button("Next", key="history_next", disabled=page + 1 >= pages, on_click=turn_page, args=(1,),
                       icon=":material/chevron_right:", width="stretch")
        rows = [r for r in picked.selection.rows if r < len(frame)]
        if rows and (chat := open_transcript(int(frame["id"].iloc[rows[0]]))) is not None:
            show_transcript(chat)

if tabs[1].open:
    with tabs[1]:
        with st.spinner("Counting…"), readonly.begin() as session:
            numbers = history.usage(session, actor, filters)
        st.caption("Your conversations, with the filters above." if not actor.is_admin
                   else "Everyone's conversations, with the filters above.")
        first, second = st.columns(4), st.columns(4)
        first[0].metric("Questions", f"{numbers.questions:,}")
        first[1].metric("Answer latency p50", milliseconds(numbers.latency_p50_ms))
        first[2].metric("Answer latency p95", milliseconds(numbers.latency_p95_ms))
        first[3].metric("Time to first token p50", milliseconds(numbers.ttft_p50_ms))
        second[0].metric("Error rate", share(numbers.error_rate))
        second[1].metric("👍 rate", share(numbers.thumbs_up_rate))
        second[2].metric("👎 rate", share(numbers.thumbs_down_rate))
        second[3].metric("Time to first token p95", milliseconds(numbers.ttft_p95_ms))
        st.subheader("Questions per day", anchor=False)
        if numbers.per_day.empty:
            st.info("No questions match these filters.")
        else:
            st.bar_chart(numbers.per_day, x="day", y="questions", x_label="Day (UTC)", y_label="Questions")
        if numbers.per_user is not None:
            st.subheader("Per user", anchor=False)
            st.dataframe(numbers.per_user, key="history_usage_users", hide_index=True, column_config={
                "user": "User", "conversations": "Conversations", "questions": "Questions", "answers": "Answers",
                "error_rate": st.column_config.NumberColumn("Error rate", format="percent"),
                "latency_p50_ms": st.column_config.NumberColumn("Latency p50 (ms)"),
                "latency_p95_ms": st.column_config.NumberColumn("Latency p95 (ms)"),
                "thumbs_up": "👍", "thumbs_down": "👎",
            })

if actor.is_admin and tabs[2].open:
    with tabs[2]:
        with readonly.begin() as session:
            entries = store.list_audit(session, actor)
        st.caption("What admins looked at, exported or purged that was not theirs; newest first.")
        st.dataframe(pd.DataFrame(entries, columns=["When", "Admin", "Action", "What"]), key="history_audit",
                     hide_index=True, width="stretch")
