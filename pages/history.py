"""History page: browse, search and export past conversations, usage numbers, and (admins) the audit log."""

import datetime as dt
import math
import time
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

import ui
from chatbot import export, history, resources, store
from chatbot.errors import ChatbotError
from chatbot.history import (
    FEEDBACK_LABELS,
    SORT_LABELS,
    STATUS_LABELS,
    HistoryFilter,
    evaluation,
    notes,
    tags,
    views,
)
from chatbot.history.syntax import parse

PAGE_SIZE = 50
OLDEST = dt.date(2000, 1, 1)
VERSIONS_KEPT_S = 60  # the flow version filter's options are read at most this often (an admin's read every answer)
TABLE_CONFIG = {
    "title": st.column_config.TextColumn("Title", width="medium"),
    "owner": st.column_config.TextColumn("Owner", width="small"),
    "started": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD", width="small"),
    "last_activity": st.column_config.DatetimeColumn("Last activity (UTC)", format="YYYY-MM-DD HH:mm", width="small"),
    "messages": st.column_config.NumberColumn("Messages", width="small"),
    "thumbs_up": st.column_config.NumberColumn("👍", width="small"),
    "thumbs_down": st.column_config.NumberColumn("👎", width="small"),
    "last_status": st.column_config.TextColumn("Last answer", width="small"),
    "engine": st.column_config.TextColumn("Engine or flow", width="small"),
    "flow_version": st.column_config.TextColumn("Flow version", width="small",
                                                help="The flow and version of the latest answer"),
    "tags": st.column_config.ListColumn("Tags", width="small"),
}
# Each filter widget's key and its value when nothing is filtered ("Clear filters" sets these).
WIDGET_DEFAULTS = {
    "history_search": "", "history_from": None, "history_to": None, "history_feedback": "any",
    "history_status": "", "history_engine": "", "history_version": "", "history_tags": [],
    "history_latency": None, "history_sort": "updated", "history_user": "", "history_deleted": False,
}  # fmt: skip

actor = ui.require_actor()
if (replay_params := st.session_state.pop("history_replay_params", None)) is not None:
    # "Replay these questions" was pressed: the filters go as one parameter, ?history=<their query>
    # (a history_* parameter is bound to this page's widgets, and a switch may not set it).
    st.switch_page(Path(__file__).with_name("replays.py"), query_params=replay_params)
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


def widget_values(filters: HistoryFilter) -> dict:
    """The filter widgets' values that show ``filters`` (a saved view, or field filters typed in the box)."""
    values = {"history_search": filters.search, "history_from": filters.since, "history_to": filters.until,
              "history_feedback": filters.feedback, "history_status": filters.status, "history_engine": filters.engine,
              "history_version": filters.version, "history_tags": list(filters.tags),
              "history_latency": filters.latency_over_ms, "history_sort": filters.sort}
    if actor.is_admin:
        values |= {"history_user": filters.user, "history_deleted": filters.deleted}
    return values


def open_linked_view() -> None:
    """?view=<id> opens a saved view: its filters become the widgets' values, once per link."""
    wanted = st.query_params.get("view", "")
    if not wanted or st.session_state.get("history_view_open") == wanted:
        return
    try:
        with readonly.begin() as session:
            view = views.get_view(session, actor, int(wanted) if wanted.isdigit() else 0)
    except ChatbotError as exc:
        ui.show_error(exc, doing="opening the saved view")
        st.session_state["history_view_open"] = wanted
        return
    st.session_state.update(widget_values(view.filters))
    st.session_state["history_view_open"] = wanted
    st.session_state["history_view_filters"] = view.filters


def take_the_search_apart() -> None:
    """Field filters typed in the box move to their widgets and the box keeps its words: the box and
    the widgets are one state. What the search left out is remembered to say so."""
    if "history_search" in st.session_state:
        typed = st.session_state["history_search"] or ""
    else:
        typed = st.query_params.get("history_search", "")
    typed = typed[:history.MAX_SEARCH_CHARS]
    parsed = parse(typed)
    if parsed.ignored:
        st.session_state["history_ignored"] = (str(parsed.query), parsed.ignored)
    moved = dict(parsed.fields)
    if not moved and str(parsed.query) == typed or len(str(parsed.query)) > history.MAX_SEARCH_CHARS:
        return  # canonical already; or its quotes would not fit the box (the filter reads it the same)
    if "user" in moved and not actor.is_admin:
        del moved["user"]
        st.session_state["history_ignored"] = (str(parsed.query), (*parsed.ignored, "user: (only admins pick a user)"))
    for name, value in moved.items():
        key = history.PARAMS[name]
        if name == "tags":
            value = sorted({*st.session_state.get(key, []), *value})
        st.session_state[key] = value
    st.session_state["history_search"] = str(parsed.query)


def clear_filters() -> None:
    st.session_state.update(WIDGET_DEFAULTS if actor.is_admin else
                            {k: v for k, v in WIDGET_DEFAULTS.items() if k not in ("history_user", "history_deleted")})
    st.session_state.pop("history_ignored", None)
    st.query_params.pop("view", None)


def with_value(options: list, key: str) -> list:
    """The options, plus the value a link or the box set if it is not among them (a selectbox refuses it)."""
    value = st.session_state.get(key)
    return options if value in options or value is None else [*options, value]


def follow_an_old_link() -> None:
    """?history_errors=true (before the status filter) opens failed answers."""
    legacy = st.query_params.get("history_errors", "")
    if legacy and "history_status" not in st.session_state:
        if legacy.lower() in ("true", "1", "yes"):
            st.session_state["history_status"] = "error"
        st.query_params.pop("history_errors", None)


follow_an_old_link()
open_linked_view()
take_the_search_apart()
version_options = flow_version_options()
with readonly.begin() as session:
    engine_options = ["", *history.engines(session, actor)]
    user_options = ["", *(u.username for u in store.list_users(session))] if actor.is_admin else [""]
    tag_options = tags.vocabulary(session, actor)
    saved_views = views.list_views(session, actor)

# max_chars also cuts a longer search from a link, and the URL then holds the cut search.
linked_search = st.query_params.get("history_search", "")
search = st.text_input("Search messages", key="history_search", bind="query-params",
                       max_chars=history.MAX_SEARCH_CHARS, placeholder='words, "a phrase", vac*, -word, tag:billing')
st.caption(history.HINT)
if len(linked_search) > history.MAX_SEARCH_CHARS:
    st.warning(f"The search in this link was {len(linked_search):,} characters long; it was shortened to "
               f"its first {history.MAX_SEARCH_CHARS:,}.", icon=":material/content_cut:")
elif len(search) >= history.MAX_SEARCH_CHARS:  # the browser cuts a longer paste without a word
    st.warning(f"A search holds at most {history.MAX_SEARCH_CHARS:,} characters: the rest was cut.",
               icon=":material/content_cut:")
canonical = parse(search)
if (canonical.fields or str(canonical.query) != search) and len(str(canonical.query)) <= history.MAX_SEARCH_CHARS:
    st.rerun()  # a link's search seeds the box on the first run; the next one takes it apart (above)
chosen = sum(st.session_state.get(k) not in (None, "", [], False, "any", "updated") for k in WIDGET_DEFAULTS
             if k != "history_search")
# Folded by default, so a phone (390 px) shows the search and the table first; says how many are set.
with st.expander(f"Filters · {chosen} set" if chosen else "Filters", expanded=False, icon=":material/tune:"):
    from_col, to_col = st.columns(2)
    since = from_col.date_input("From (UTC)", value=None, min_value=OLDEST, key="history_from", bind="query-params")
    until = to_col.date_input("To (UTC)", value=None, min_value=OLDEST, key="history_to", bind="query-params")
    row = st.columns(3, vertical_alignment="bottom")
    feedback = row[0].selectbox("Feedback", list(FEEDBACK_LABELS), format_func=FEEDBACK_LABELS.get,
                                key="history_feedback", bind="query-params")
    status = row[1].selectbox("Answer status", list(STATUS_LABELS), format_func=STATUS_LABELS.get,
                              key="history_status", bind="query-params",
                              help="Only conversations with an answer that failed, was stopped or was interrupted.")
    sort = row[2].selectbox("Sort by", list(SORT_LABELS), format_func=SORT_LABELS.get,
                            key="history_sort", bind="query-params")
    row = st.columns(3, vertical_alignment="bottom")
    engine = row[0].selectbox("Engine or flow", with_value(engine_options, "history_engine"),
                              format_func=lambda e: e or "All", key="history_engine", bind="query-params")
    version = row[1].selectbox("Flow version", with_value(version_options, "history_version"),
                               format_func=lambda v: v or "All", key="history_version", bind="query-params",
                               help="Only conversations with an answer from this version of a flow.")
    latency = row[2].number_input("Slower than (ms)", min_value=0, step=500, value=None, key="history_latency",
                                  bind="query-params", help="Only conversations with an answer that took longer.")
    chosen_tags = st.multiselect("Tags", sorted({*tag_options, *st.session_state.get("history_tags", [])}),
                                 key="history_tags", bind="query-params", accept_new_options=True,
                                 help="Only conversations with every one of these tags.")
    user, deleted = "", False
    if actor.is_admin:
        user = st.selectbox("User", with_value(user_options, "history_user"), format_func=lambda u: u or "Everyone",
                            key="history_user", bind="query-params")
        deleted = st.checkbox("Deleted conversations only (to purge them)", key="history_deleted", bind="query-params")
    st.button("Clear filters", key="history_clear", on_click=clear_filters, icon=":material/filter_alt_off:")

try:
    filters = HistoryFilter(since=since, until=until, search=search.strip(), feedback=feedback, status=status or "",
                            engine=engine or "", version=version or "", tags=tuple(chosen_tags or ()),
                            latency_over_ms=int(latency) if latency is not None else None,
                            user=user or "", deleted=deleted, sort=sort)
except ChatbotError as exc:
    ui.show_error(exc, doing="filtering")
    st.stop()
ignored = st.session_state.get("history_ignored")
if ignored and ignored[0] == filters.search:  # said until the search changes
    filters = HistoryFilter(**{f: getattr(filters, f) for f in history.PARAMS}, ignored=ignored[1])
if st.session_state.get("history_view_filters") not in (None, filters):  # the view was changed: its link no longer says it
    st.query_params.pop("view", None)
    st.session_state.pop("history_view_filters", None)


# -- saved views, in the sidebar --------------------------------------------------------------
def save_view() -> None:
    name = st.session_state.get("history_view_name", "")
    try:
        with db.begin() as session:
            view = views.save_view(session, actor, name, filters, shared=st.session_state.get("history_view_shared", False))
    except ChatbotError as exc:
        st.session_state["history_view_error"] = exc
        return
    st.query_params["view"] = str(view.id)
    st.session_state.update(history_view_open=str(view.id), history_view_filters=filters)
    st.toast(f"Saved the view “{view.name}”" + (", shared with everyone." if view.shared else "."))


def delete_view(view_id: int) -> None:
    try:
        with db.begin() as session:
            views.delete_view(session, actor, view_id)
    except ChatbotError as exc:
        st.session_state["history_view_error"] = exc
        return
    st.query_params.pop("view", None)
    st.session_state.pop("history_view_filters", None)
    st.toast("View deleted.")


def open_view(view_id: int) -> None:
    st.query_params["view"] = str(view_id)
    st.session_state.pop("history_view_open", None)


with st.sidebar:
    st.subheader("Saved views", anchor=False)
    if not saved_views:
        st.caption("None yet: filter, then save the view.")
    for view in saved_views:
        st.button(ui.plain_text(view.label), key=f"history_view_{view.id}", on_click=open_view, args=(view.id,),
                  icon=":material/group:" if view.shared else ":material/bookmark:", width="stretch")
    with st.popover("Save this view", icon=":material/bookmark_add:", width="stretch"):
        st.text_input("Name", key="history_view_name", max_chars=views.VIEW_NAME_CHARS)
        st.checkbox("Share with everyone", key="history_view_shared",
                    help="Others see the view's name and filters; each sees only the conversations they may read.")
        st.button("Save", key="history_view_save", on_click=save_view, type="primary")
    opened = next((v for v in saved_views if str(v.id) == st.query_params.get("view") and v.owner == actor.username), None)
    if opened is not None:
        st.button(f"Delete “{ui.plain_text(opened.name)}”", key="history_view_delete", on_click=delete_view,
                  args=(opened.id,), icon=":material/bookmark_remove:", width="stretch")
    if (failed := st.session_state.pop("history_view_error", None)) is not None:
        ui.show_error(failed, doing="saving the view")


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
def download(write):
    """A download made when it is clicked: audited first, then written by ``write(session, out)``."""
    return ui.download(write, audit=lambda session: history.record_export(session, actor, filters), db=db,
                       read=readonly)


def export_file(label: str):
    return download(lambda session, out: history.write_export(session, actor, filters, label, out))


def export_size() -> int:
    """How many messages the downloads hold: counted once per set of filters (it reads every message)."""
    if "history_export_rows" not in st.session_state:
        with readonly.begin() as session:
            st.session_state["history_export_rows"] = history.count_export_rows(session, actor, filters)
    return st.session_state["history_export_rows"]


def evaluation_file(fmt: str):
    return download(lambda session, out: evaluation.write_evaluation(session, actor, filters, fmt, out))


def downloads(rows: int) -> None:
    """The five formats and the evaluation set, in one menu (one button on a phone, not seven)."""
    too_many = rows > export.EXCEL_MAX_ROWS
    with st.popover(f"Download {rows:,} messages", icon=":material/download:"):
        st.caption(f"Download the {rows:,} messages of these conversations:")
        for fmt in export.FORMATS.values():
            name = export.safe_filename(f"history {filters.user} {dt.date.today()}", fmt.extension)
            st.download_button(fmt.label, data=export_file(fmt.label), file_name=name, mime=fmt.mime,
                               key=f"history_export_{fmt.extension}", on_click="ignore",
                               disabled=too_many and fmt.label == "Excel", width="stretch")
        st.caption("Evaluation set: each answered turn with its corrected answer, feedback, tags and context.")
        for code, (label, extension, mime) in evaluation.FORMATS.items():
            name = export.safe_filename(f"evaluation {dt.date.today()}", extension)
            st.download_button(label, data=evaluation_file(code), file_name=name, mime=mime,
                               key=f"history_{code.replace('-', '_')}", on_click="ignore", width="stretch")
    if too_many:
        st.warning(f"Excel holds at most 1,048,576 rows and this export has {rows:,} messages: "
                   "download CSV or Parquet instead, or narrow the filters.", icon=":material/table_view:")


def replay_button() -> None:
    """To the replays page with these filters: their questions asked again of another flow, compared."""
    st.button("Replay these questions", key="history_replay", icon=":material/compare_arrows:",
              on_click=st.session_state.__setitem__,
              args=("history_replay_params", {"history": urlencode(filters.to_query_params(), doseq=True)}),
              help="Ask these conversations' questions again of another flow and compare the answers.")


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


def reopen(conversation_id: int) -> None:
    """The open transcript is read again (after its tags or a note changed)."""
    st.session_state.pop("history_open", None)
    st.session_state.pop("history_export_rows", None)


def save_tags(conversation_id: int) -> None:
    try:
        with db.begin() as session:
            tags.set_tags(session, actor, conversation_id, st.session_state[f"history_chat_tags_{conversation_id}"])
    except ChatbotError as exc:
        st.session_state["history_edit_error"] = (exc, "tagging the conversation")
    reopen(conversation_id)


def save_note(message_id: int, conversation_id: int) -> None:
    try:
        with db.begin() as session:
            notes.set_note(session, actor, message_id, note=st.session_state.get(f"history_note_{message_id}", ""),
                           corrected_answer=st.session_state.get(f"history_fix_{message_id}", ""))
    except ChatbotError as exc:
        st.session_state["history_edit_error"] = (exc, "saving the note")
    reopen(conversation_id)


def note_editor(m: history.TranscriptMessage, chat: history.Transcript) -> None:
    if m.note:
        st.info(ui.plain_text(f"Note: {m.note}"), icon=":material/sticky_note_2:")
    if m.corrected_answer:
        st.success(ui.plain_text(f"Should have said: {m.corrected_answer}"), icon=":material/edit_note:")
    if chat.deleted:
        return
    with st.popover("Edit note" if m.note or m.corrected_answer else "Add a note", icon=":material/edit:"):
        with st.form(f"history_note_form_{m.id}", border=False):
            st.text_area("Note", value=m.note or "", key=f"history_note_{m.id}", max_chars=notes.NOTE_CHARS)
            st.text_area("Corrected answer (what it should have said)", value=m.corrected_answer or "",
                         key=f"history_fix_{m.id}", max_chars=notes.CORRECTED_CHARS)
            st.form_submit_button("Save note", on_click=save_note, args=(m.id, chat.id), type="primary")


def show_transcript(chat: history.Transcript) -> None:
    st.subheader(ui.plain_text(chat.title), anchor=False)
    gone = " · deleted by its owner" if chat.deleted else ""
    st.caption(f"{chat.owner} · started {chat.created_at:%Y-%m-%d %H:%M} UTC · {len(chat.messages)} messages{gone}")
    buttons = st.container(horizontal=True)  # wraps on a narrow column instead of cutting the labels
    buttons.download_button("Transcript (Markdown)", data=chat.markdown, file_name=export.safe_filename(chat.title, "md"),
                            mime="text/markdown", key="history_transcript_md", on_click="ignore")
    buttons.download_button("Transcript (JSON)", data=chat.json, file_name=export.safe_filename(chat.title, "json"),
                            mime="application/json", key="history_transcript_json", on_click="ignore")
    if chat.owner == actor.username and not chat.deleted:
        if buttons.button("Delete", key="history_delete", icon=":material/delete:"):
            st.session_state["history_confirm"] = ("delete", chat.id)
    if actor.is_admin and buttons.button("Purge", key="history_purge", icon=":material/delete_forever:"):
        st.session_state["history_confirm"] = ("purge", chat.id)
    confirm_removal(chat.id)
    if (failed := st.session_state.pop("history_edit_error", None)) is not None:
        ui.show_error(failed[0], doing=failed[1])
    if not chat.deleted:
        st.multiselect("Tags", sorted({*tag_options, *chat.tags}), default=list(chat.tags),
                       key=f"history_chat_tags_{chat.id}", accept_new_options=True, on_change=save_tags,
                       args=(chat.id,), placeholder="Add a tag", help="Type a new tag and press Enter.")
    for m in chat.messages:
        with st.chat_message(m.role):
            ui.message_body(m, admin=actor.is_admin)
            st.caption(message_details(m))
            if m.role == "assistant":
                note_editor(m, chat)


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
        said = history.searched(filters)
        if not matches:
            st.info(ui.plain_text(history.no_match(filters)), icon=":material/search_off:")
        elif said:
            st.caption(ui.plain_text(said))
        one = matches == 1 and not matches.at_least
        counted, clear = st.columns([4, 1], vertical_alignment="center")
        counted.caption(f"{matches.label()} conversation{'' if one else 's'} match{'es' if one else ''}")
        clear.button("Clear filters", key="history_clear_top", on_click=clear_filters, icon=":material/filter_alt_off:",
                     width="stretch")
        if matches:
            downloads(export_size())
            replay_button()
        shown = [c for c in history.TABLE_COLUMNS if c != "id" and (c != "owner" or actor.is_admin)]
        selected = st.session_state.get("history_table", {}).get("selection", {}).get("rows", [])
        # The transcript opens beside the table on a wide screen; a phone stacks it under the table.
        where_table, where_chat = st.columns([3, 2]) if selected else (st.container(), None)
        with where_table:
            picked = st.dataframe(frame, key="history_table", on_select="rerun", selection_mode="single-row",
                                  hide_index=True, column_config=TABLE_CONFIG, column_order=shown, width="stretch")
            back, where, forward = st.columns([1, 2, 1], vertical_alignment="center")
            back.button("Previous", key="history_prev", disabled=page == 0, on_click=turn_page, args=(-1,),
                        icon=":material/chevron_left:", width="stretch")
            where.caption(f"Page {page + 1} of {pages}{'+' if matches.at_least else ''}")
            forward.button("Next", key="history_next", disabled=page + 1 >= pages, on_click=turn_page, args=(1,),
                           icon=":material/chevron_right:", width="stretch")
        rows = [r for r in picked.selection.rows if r < len(frame)]
        if rows and (chat := open_transcript(int(frame["id"].iloc[rows[0]]))) is not None:
            with where_chat if where_chat is not None else st.container():
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
        st.dataframe(pd.DataFrame(entries, columns=["When (UTC)", "Admin", "Action", "What"]), key="history_audit",
                     hide_index=True, width="stretch")
        st.subheader("Rename or merge a tag", anchor=False)
        st.caption("For everyone: renaming onto an existing tag merges the two.")
        with st.form("history_rename_tag", border=False):
            old_col, new_col = st.columns(2)
            old_tag = old_col.selectbox("Tag", tag_options, key="history_tag_old", index=None)
            new_tag = new_col.text_input("New name", key="history_tag_new", max_chars=tags.TAG_CHARS)
            if st.form_submit_button("Rename", icon=":material/sell:") and old_tag:
                try:
                    with db.begin() as session:
                        renamed = tags.rename_tag(session, actor, old_tag, new_tag)
                except ChatbotError as exc:
                    ui.show_error(exc, doing="renaming the tag")
                else:
                    st.toast(f"Renamed “{old_tag}” on {renamed:,} conversations.")
