"""Chat page: conversations in the sidebar, the transcript, the question box, the streaming answer.

An answer streams in a thread of its own (chatbot.live): this page draws what has arrived,
and a rerun, asked for or not, draws it again instead of ending it.
"""

import json

import streamlit as st

import ui
from chatbot import chat, flows, live, resources, store
from chatbot.config import NOTES
from chatbot.engine import Attachment
from chatbot.errors import ChatbotError

RECENT = 50  # messages shown at first; older ones on demand
SIDEBAR_PAGE = 30  # conversations listed at first, and added by "Show more"
REDRAW_SECONDS = 0.05  # at most 20 redraws a second while an answer streams

actor = ui.require_actor()
settings = resources.settings()
db = resources.database(settings.database_url, settings.db_pool_size)
st.session_state.setdefault("chat_limit", RECENT)


def pick_conversation(conversation_id: int | None) -> None:
    """A click in the sidebar: open it, and close the sidebar on a phone."""
    open_conversation(conversation_id)
    st.session_state["chat_picked"] = st.session_state.get("chat_picked", 0) + 1


def open_conversation(conversation_id: int | None) -> None:
    st.session_state["chat_conversation"] = conversation_id
    st.session_state["chat_limit"] = RECENT
    st.session_state.pop("chat_confirm_delete", None)
    if conversation_id is None:
        st.query_params.pop("c", None)
    else:
        st.query_params["c"] = str(conversation_id)


def current_conversation() -> int | None:
    """The open conversation: chosen in this session, else from the URL, else the most recent."""
    if "chat_conversation" not in st.session_state:
        from_url = st.query_params.get("c", "")
        chosen = int(from_url) if from_url.isdigit() else None
        if chosen is None:
            with db.begin() as session:
                newest = store.list_conversations(session, actor, limit=1)
            chosen = newest[0].id if newest else None
        open_conversation(chosen)
    return st.session_state["chat_conversation"]


def show_more_conversations() -> None:
    st.session_state["chat_sidebar_limit"] += SIDEBAR_PAGE


def sidebar(conversation_id) -> None:
    """New chat, a search over titles, and the newest conversations by date ("Show more" pages in SQL)."""
    with st.sidebar:
        st.button("New chat", icon=":material/add:", key="chat_new", on_click=pick_conversation, args=(None,),
                  use_container_width=True)
        search = st.text_input("Search your chats", key="chat_title_search", placeholder="Search your chats",
                               label_visibility="collapsed", icon=":material/search:")
        limit = st.session_state.setdefault("chat_sidebar_limit", SIDEBAR_PAGE)
        with db.begin() as session:
            conversations = store.list_conversations(session, actor, limit=limit + 1, title_search=search)
        for group, members in ui.by_date(conversations[:limit]):
            st.caption(group)
            for c in members:
                st.button(
                    ui.plain_text(c.title), key=f"chat_open_{c.id}", on_click=pick_conversation, args=(c.id,),
                    type="primary" if c.id == conversation_id else "secondary", use_container_width=True,
                )
        if len(conversations) > limit:
            st.button("Show more", key="chat_sidebar_more", on_click=show_more_conversations, type="tertiary")
        if not conversations:
            st.caption("No chat title holds that." if search else "Your conversations will appear here.")
    picked = st.session_state.get("chat_picked", 0)  # counts up, so each pick's script is a new element
    if picked != st.session_state.get("chat_picked_closed", 0):
        st.session_state["chat_picked_closed"] = picked
        ui.close_sidebar_on_mobile(picked)


def chosen_flow(conversation) -> str:
    """The flow this chat asks: the open conversation's own, or for a new chat the one picked
    (the catalog's first by default). Only a new chat has the picker."""
    choices = settings.choices() or [NOTES]
    if conversation is not None:
        return conversation.flow or choices[0]
    if len(choices) == 1:
        return choices[0]
    if st.session_state.get("chat_flow") not in choices:
        st.session_state["chat_flow"] = choices[0]
    problems = {key: flow_problem(key) for key in choices}
    picked = st.selectbox("Flow", choices, key="chat_flow", help="The flow that answers this new chat.",
                          format_func=lambda key: flow_label(key) + (" (unavailable)" if problems[key] else ""))
    return picked


def flow_problem(key: str) -> str | None:
    """Why a catalog flow cannot answer now (Langflow down, no such flow), or None."""
    if key == NOTES:
        return None
    return directory.problem(key) if directory else None


def flow_info(key: str):
    """What Langflow said of the flow lately (name, version, file inputs), or None."""
    if key == NOTES or directory is None or flow_problem(key):
        return None
    return directory.info(key, fresh=False)


def flow_label(key: str) -> str:
    """As typed: a select box shows its options as plain text; plain_text it for Markdown."""
    return flows.label_of(settings, key, flow_info(key))


def header(conversation) -> str:
    """The title, the flow picker of a new chat, and what answers; returns the chat's flow."""
    st.title(ui.plain_text(conversation.title if conversation is not None else "New chat"))
    key = chosen_flow(conversation)
    about_flow(key)
    return key


def about_flow(key: str) -> None:
    if key == NOTES:
        note = f"Answering from your notes in `{settings.notes_dir}`."
        if actor.is_admin and not settings.uses_langflow:
            note += (" To answer with a Langflow flow, set `LANGFLOW_URL`, `LANGFLOW_FLOW_ID` and "
                     "`LANGFLOW_API_KEY` (see the README).")
        st.caption(note)
        return
    info = flow_info(key)
    version = f" ({info.version})" if info and info.version else ""
    st.caption(ui.plain_text(f"Answering with the Langflow flow {flow_label(key)}{version}."))
    if problem := flow_problem(key):
        st.warning(ui.plain_text(f"This flow cannot answer right now: {problem}" if actor.is_admin else
                                 "This flow cannot answer right now. Try again in a minute, pick another flow "
                                 "for a new chat, or tell your admin."), icon=":material/cloud_off:")


def load_conversation(conversation_id):
    """The open conversation, or None for a new chat; one that is gone opens a new chat."""
    if conversation_id is None:
        return None
    try:
        with db.begin() as session:
            return store.get_conversation(session, actor, conversation_id)
    except ChatbotError as exc:
        ui.show_error(exc, doing="opening the conversation")
        open_conversation(None)
        return None


def rename(conversation_id: int, old_title: str) -> None:
    new_title = st.session_state.get(f"chat_title_{conversation_id}", "")
    if new_title == old_title:
        return
    try:
        with db.begin() as session:
            store.rename_conversation(session, actor, conversation_id, new_title)
        st.toast("Renamed.")
    except ChatbotError as exc:
        ui.show_error(exc, doing="renaming")


def manage(conversation) -> None:
    """Rename (Enter or the button) or delete the open conversation, in the sidebar."""
    with st.sidebar.expander("Manage this chat"):
        st.text_input("Title", value=conversation.title, key=f"chat_title_{conversation.id}",
                      on_change=rename, args=(conversation.id, conversation.title))
        st.button("Rename", key="chat_rename", on_click=rename, args=(conversation.id, conversation.title))
        if st.button("Delete", key="chat_delete"):
            st.session_state["chat_confirm_delete"] = conversation.id
        if st.session_state.get("chat_confirm_delete") == conversation.id:
            st.warning("Delete this conversation? It disappears from your lists and exports.")
            if st.button("Yes, delete it", key="chat_delete_confirm", type="primary"):
                with db.begin() as session:
                    store.delete_conversation(session, actor, conversation.id)
                open_conversation(None)
                st.rerun()


def save_feedback(message_id: int) -> None:
    score = st.session_state.get(f"chat_fb_{message_id}")
    comment = st.session_state.get(f"chat_fb_comment_{message_id}")
    if score is None:
        return
    try:
        with db.begin() as session:
            store.set_feedback(session, actor, message_id, score=score, comment=comment)
        st.toast("Thanks, feedback saved.")
    except ChatbotError as exc:
        ui.show_error(exc, doing="saving feedback")


# Regenerate, Retry and an edit's "Save and send" are requests: their callbacks leave one here, and
# the run that follows starts it before it draws the transcript, which then shows the new turn.
def request(action: str, question_id: int | None = None) -> None:
    text = st.session_state.get(f"chat_edit_{question_id}") if question_id else None
    st.session_state["chat_request"] = (action, text)
    st.session_state.pop("chat_paged", None)  # every turn back at its newest version


def page_version(root: int, version: int) -> None:
    """‹ or ›: show version ``version`` of the turn whose first answer is ``root``."""
    st.session_state.setdefault("chat_paged", {})[root] = version


def shown_version(question, answer):
    """(question, answer) as the analyst paged them: the current answer or an earlier version of
    it, with the question that version answered."""
    wanted = st.session_state.get("chat_paged", {}).get(answer.version_of or answer.id) if answer else None
    if wanted in (None, answer.version if answer else None):
        return question, answer
    try:
        with db.begin() as session:
            shown, asked = store.answer_version(session, actor, answer.id, wanted)
    except ChatbotError:
        return question, answer
    return asked or question, shown


def transcript(conversation, streaming) -> None:
    """The saved turns, each at the version the analyst paged to (but the answer streaming now,
    drawn live below)."""
    if conversation is None:
        return
    try:
        with db.begin() as session:
            messages = store.list_messages(session, actor, conversation.id, current_only=True,
                                           limit=st.session_state["chat_limit"] + 1)
    except ChatbotError as exc:
        ui.show_error(exc, doing="opening the conversation")
        open_conversation(None)
        st.stop()
    manage(conversation)
    if len(messages) > st.session_state["chat_limit"]:
        messages = messages[1:]
        if st.button("Show older messages", key="chat_older"):
            st.session_state["chat_limit"] += RECENT * 4
            st.rerun()
    if streaming is not None:
        messages = [m for m in messages if m.id != streaming.message_id]
    turns = chat.pair_turns(messages)
    shown = [shown_version(question, answer) for question, answer in turns]
    with db.begin() as session:
        feedback = store.feedback_for(session, actor, [answer.id for _q, answer in shown if answer])
    for n, ((question, answer), (_q, current)) in enumerate(zip(shown, turns, strict=True)):
        last = n == len(turns) - 1 and streaming is None
        if question is not None:
            draw_question(question, editable=last and (current is None or answer is current))
        if answer is not None:
            draw_answer(answer, current, feedback.get(answer.id), last=last)
        elif last:
            st.info("This question has no answer yet.")
            st.button("Retry", icon=":material/refresh:", key="chat_retry", on_click=request, args=("regenerate",))


def draw_question(question, *, editable: bool) -> None:
    """A question, with Copy; the last one can be edited and sent again."""
    with st.chat_message("user"):
        if st.session_state.get("chat_editing") == question.id and editable:
            edit_box(question)
            return
        ui.message_body(question)
        with st.container(horizontal=True, key=f"chat_q_actions_{question.id}"):
            ui.copy_button(question)
            if editable:
                st.button("Edit", icon=":material/edit:", key="chat_edit", type="tertiary", on_click=st.session_state.update,
                          kwargs={"chat_editing": question.id})


def edit_box(question) -> None:
    st.text_area("Edit your question", value=question.content, key=f"chat_edit_{question.id}")
    with st.container(horizontal=True):
        st.button("Save and send", type="primary", key="chat_edit_send", on_click=request,
                  args=("edit", question.id))
        st.button("Cancel", key="chat_edit_cancel", on_click=st.session_state.pop, args=("chat_editing", None))


def draw_answer(answer, current, given, *, last: bool) -> None:
    """An answer with its status and caption; ‹ n / N › when it has versions; Copy; Regenerate
    (Retry when it failed) under the last one; 👍/👎 unless it failed."""
    root = current.version_of or current.id
    with st.chat_message("assistant"):
        ui.message_body(answer, admin=actor.is_admin)
        st.caption(ui.plain_text(ui.message_caption(answer)))
        with st.container(horizontal=True, vertical_alignment="center", key=f"chat_a_actions_{answer.id}"):
            if current.version > 1:
                version_pager(root, answer.version, current.version)
            ui.copy_button(answer)
            if last:
                failed = current.status in ("error", "interrupted")
                st.button("Retry" if failed else "Regenerate", icon=":material/refresh:", type="tertiary",
                          key="chat_retry" if failed else "chat_regenerate", on_click=request, args=("regenerate",))
        if answer.status != "error":  # nothing to rate in an answer that failed
            feedback_widgets(answer, given)


def version_pager(root: int, shown: int, newest: int) -> None:
    st.button("‹", key=f"chat_ver_prev_{root}", help="Previous version", type="tertiary", disabled=shown <= 1,
              on_click=page_version, args=(root, shown - 1))
    st.caption(f"{shown} / {newest}")
    st.button("›", key=f"chat_ver_next_{root}", help="Next version", type="tertiary", disabled=shown >= newest,
              on_click=page_version, args=(root, shown + 1))


def feedback_widgets(message, given) -> None:
    st.feedback("thumbs", key=f"chat_fb_{message.id}", default=given.score if given else None,
                on_change=save_feedback, args=(message.id,))
    if st.session_state.get(f"chat_fb_{message.id}") is not None or given:
        st.text_input("Comment (optional)", key=f"chat_fb_comment_{message.id}",
                      value=given.comment if given and given.comment else "",
                      on_change=save_feedback, args=(message.id,))


def start_turn(sent, asked, route, conversation_id):
    """Save the question (or take the last one again, or as edited) and start its answer; None if
    nothing to do. ``sent`` is what the chat input gave; ``asked`` a request from Regenerate,
    Retry or an edit's "Save and send"."""
    action, edited = asked or (None, None)
    prompt, attachments = question_and_files(sent)
    try:
        tweaks = admin_tweaks(route)
        if sent is not None:
            turn = chat.ask(db, actor, conversation_id, prompt or "", route, max_chars=settings.max_message_chars,
                            attachments=attachments, limits=limits, tweaks=tweaks)
        elif action == "regenerate" and conversation_id is not None:
            turn = chat.regenerate(db, actor, conversation_id, route, tweaks=tweaks)
        elif action == "edit" and conversation_id is not None:
            turn = chat.edit(db, actor, conversation_id, edited or "", route, max_chars=settings.max_message_chars,
                             tweaks=tweaks)
        else:
            return None
        if turn is None:
            st.toast("Type a question first.")
            return None
        streaming = live.start(turn)
    except ChatbotError as exc:
        ui.show_error(exc, doing="sending your question")
        if prompt:
            st.caption("Your question, so you can copy it:")
            st.code(prompt, language=None)
        return None
    st.session_state.pop("chat_editing", None)
    st.session_state["chat_tweaks_sent"] = tweaks is not None  # the box empties on the next run
    if turn.conversation_id != conversation_id:
        open_conversation(turn.conversation_id)
    if sent is not None:
        with st.chat_message("user"):
            ui.question_body(turn.question)
            ui.attached_files([{"name": a.name, "size": a.size} for a in attachments])
    return streaming


def question_and_files(sent) -> tuple[str | None, tuple[Attachment, ...]]:
    """The chat input's text and files (it gives a plain string when it takes no files)."""
    if sent is None or isinstance(sent, str):
        return sent, ()
    files = tuple(Attachment(f.name, f.type or "", f.getvalue()) for f in sent.files or [])
    return sent.text, files


def admin_tweaks(route) -> dict | None:
    """An admin's tweaks for the next question, from the Advanced panel (chatbot.flows checks them)."""
    return flows.admin_tweaks(st.session_state.get("chat_tweaks_text", ""), flow_info(route.key)) \
        if actor.is_admin else None


def advanced_panel(route) -> None:
    """Admins: tweaks to try on the next question only (sent, logged and kept with its answer)."""
    if not actor.is_admin or route.directory is None:
        return
    if st.session_state.pop("chat_tweaks_sent", False):
        st.session_state["chat_tweaks_text"] = ""
    info = flow_info(route.key)
    with st.expander("Advanced: tweaks for the next question", icon=":material/tune:"):
        st.text_area("Tweaks (JSON, by component id)", key="chat_tweaks_text", height=100,
                     placeholder='{"OpenAIModel-x1y2z": {"temperature": 0.2}}')
        if info is not None:
            st.caption(ui.plain_text("Components: " + ", ".join(sorted(info.components))))
        if route.tweaks:
            st.caption("Sent with every question (LANGFLOW_FLOWS):")
            st.code(json.dumps(route.tweaks, indent=1), language="json")


def composer(route):
    """The question box; it takes files when the flow has somewhere to put them. It stays open
    when the flow looked unavailable: the question is saved, and the answer says what failed."""
    types = flows.accepted_types(flow_info(route.key), settings.upload_types)
    placeholder = "Ask a question about your notes" if route.key == NOTES else "Ask a question"
    return st.chat_input(placeholder, key="chat_input", submit_mode="disable",
                         accept_file="multiple" if types else False, file_type=list(types) or None)


def show_streaming(streaming) -> None:
    """Draw the answer as it arrives, until it is saved; then show it from the database."""
    with st.chat_message("assistant"):
        slot = st.empty()
        if st.button("Stop", icon=":material/stop_circle:", key=f"chat_stop_{streaming.message_id}"):
            streaming.stop()
        while not streaming.wait(REDRAW_SECONDS):
            ui.live_answer(slot, streaming.outputs(), streaming.progress, stopping=streaming.stopping)
    st.rerun()  # the saved answer, with its status, error and feedback


conversation_id = current_conversation()
sidebar(conversation_id)
conversation = load_conversation(conversation_id)
conversation_id = conversation.id if conversation is not None else None
directory = resources.flow_directory(settings.langflow_url, settings.langflow_api_key, settings.langflow_timeout) \
    if settings.uses_langflow else None
key = header(conversation)
try:
    route = resources.route(settings, key)
except ChatbotError as exc:
    ui.show_error(exc, doing="starting the answering engine")
    st.stop()
limits = chat.FileLimits(settings.max_upload_mb, settings.upload_types)

streaming = live.running(db, actor, conversation_id)  # before the transcript is read: see transcript()
if streaming is None and "chat_request" in st.session_state:  # Regenerate, Retry, an edit: drawn as the new turn
    streaming = start_turn(None, st.session_state.pop("chat_request"), route, conversation_id)
transcript(conversation, streaming)
advanced_panel(route)
sent = composer(route)
if streaming is None:
    streaming = start_turn(sent, None, route, conversation_id)
elif sent:  # sent while an answer streams (the box is disabled then, but a click can race it)
    st.warning("The last answer is still arriving, so this question was not sent. Send it again once it is done:")
    st.code(question_and_files(sent)[0] or "", language=None)
if streaming is not None:
    show_streaming(streaming)
