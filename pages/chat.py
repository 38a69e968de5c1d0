"""Chat page: conversations in the sidebar, the transcript, the question box, the streaming answer.

An answer streams in a thread of its own (chatbot.live): this page draws what has arrived,
and a rerun, asked for or not, draws it again instead of ending it.
"""

import streamlit as st

import ui
from chatbot import chat, live, resources, store
from chatbot.errors import ChatbotError

RECENT = 50  # messages shown at first; older ones on demand
SIDEBAR_PAGE = 30  # conversations listed at first, and added by "Show more"
REDRAW_SECONDS = 0.05  # at most 20 redraws a second while an answer streams

actor = ui.require_actor()
settings = resources.settings()
db = resources.database(settings.database_url, settings.db_pool_size)
st.session_state.setdefault("chat_limit", RECENT)


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
        st.button("New chat", icon=":material/add:", key="chat_new", on_click=open_conversation, args=(None,),
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
                    ui.plain_text(c.title), key=f"chat_open_{c.id}", on_click=open_conversation, args=(c.id,),
                    type="primary" if c.id == conversation_id else "secondary", use_container_width=True,
                )
        if len(conversations) > limit:
            st.button("Show more", key="chat_sidebar_more", on_click=show_more_conversations, type="tertiary")
        if not conversations:
            st.caption("No chat title holds that." if search else "Your conversations will appear here.")


def header(backend, conversation) -> None:
    st.title(ui.plain_text(conversation.title if conversation is not None else "New chat"))
    if backend.engine == "notes":
        note = f"Answering from your notes in `{settings.notes_dir}`."
        if actor.is_admin:
            note += (" To answer with a Langflow flow, set `LANGFLOW_URL`, `LANGFLOW_FLOW_ID` and "
                     "`LANGFLOW_API_KEY` (see the README).")
        st.caption(note)
    else:
        st.caption(f"Answering with the Langflow flow {ui.plain_text(backend.label)}.")


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


def transcript(conversation, streaming) -> list:
    """The saved messages (but the answer streaming now, drawn live below); returns them."""
    if conversation is None:
        return []
    try:
        with db.begin() as session:
            messages = store.list_messages(session, actor, conversation.id, limit=st.session_state["chat_limit"] + 1)
            feedback = store.feedback_for(session, actor, [m.id for m in messages])
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
    for m in messages:
        with st.chat_message(m.role):
            ui.message_body(m, admin=actor.is_admin)
            if m.role == "assistant":
                st.caption(ui.plain_text(ui.message_caption(m)))
                if m.status != "error":  # nothing to rate in an answer that failed
                    feedback_widgets(m, feedback.get(m.id))
            ui.copy_button(m)
    return messages


def feedback_widgets(message, given) -> None:
    st.feedback("thumbs", key=f"chat_fb_{message.id}", default=given.score if given else None,
                on_change=save_feedback, args=(message.id,))
    if st.session_state.get(f"chat_fb_{message.id}") is not None or given:
        st.text_input("Comment (optional)", key=f"chat_fb_comment_{message.id}",
                      value=given.comment if given and given.comment else "",
                      on_change=save_feedback, args=(message.id,))


def retry_button(messages) -> bool:
    """Retry, under an answer that did not finish or a question that has none."""
    last = messages[-1] if messages else None
    if last is None or (last.role == "assistant" and last.status == "complete"):
        return False
    if last.role == "user":
        st.info("This question has no answer yet.")
    return st.button("Retry", icon=":material/refresh:", key="chat_retry")


def start_turn(prompt, retry_clicked, backend, conversation_id):
    """Save the question (or take the last one again) and start its answer; None if nothing to do."""
    try:
        if prompt is not None:
            turn = chat.ask(db, actor, conversation_id, prompt, backend, max_chars=settings.max_message_chars)
            if turn is None:
                st.toast("Type a question first.")
                return None
        elif retry_clicked:
            turn = chat.retry(db, actor, conversation_id, backend)
        else:
            return None
        streaming = live.start(turn)
    except ChatbotError as exc:
        ui.show_error(exc, doing="sending your question")
        if prompt:
            st.caption("Your question, so you can copy it:")
            st.code(prompt, language=None)
        return None
    if turn.conversation_id != conversation_id:
        open_conversation(turn.conversation_id)
    if prompt is not None:
        with st.chat_message("user"):
            ui.question_body(turn.question)
    return streaming


def show_streaming(streaming) -> None:
    """Draw the answer as it arrives, until it is saved; then show it from the database."""
    with st.chat_message("assistant"):
        slot = st.empty()
        if st.button("Stop", icon=":material/stop_circle:", key=f"chat_stop_{streaming.message_id}"):
            streaming.stop()
        while not streaming.wait(REDRAW_SECONDS):
            ui.live_answer(slot, streaming.outputs(), stopping=streaming.stopping)
    st.rerun()  # the saved answer, with its status, error and feedback


conversation_id = current_conversation()
sidebar(conversation_id)
conversation = load_conversation(conversation_id)
conversation_id = conversation.id if conversation is not None else None
try:
    backend = resources.backend(settings)
except ChatbotError as exc:
    ui.show_error(exc, doing="starting the answering engine")
    st.stop()
header(backend, conversation)

streaming = live.running(db, actor, conversation_id)  # before the transcript is read: see transcript()
messages = transcript(conversation, streaming)
retry_clicked = streaming is None and retry_button(messages)
prompt = st.chat_input("Ask a question about your notes" if backend.engine == "notes" else "Ask a question",
                       key="chat_input", submit_mode="disable")
if streaming is None:
    streaming = start_turn(prompt, retry_clicked, backend, conversation_id)
elif prompt:  # sent while an answer streams (the box is disabled then, but a click can race it)
    st.warning("The last answer is still arriving, so this question was not sent. Send it again once it is done:")
    st.code(prompt, language=None)
if streaming is not None:
    show_streaming(streaming)
