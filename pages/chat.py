"""Chat page: conversations in the sidebar, the transcript, the question box, the streaming answer.

An answer streams in a thread of its own (chatbot.live): this page draws what has arrived,
and a rerun, asked for or not, draws it again instead of ending it.
"""

import streamlit as st

import ui
from chatbot import chat, live, resources, store
from chatbot.errors import ChatbotError

RECENT = 50  # messages shown at first; older ones on demand
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


def current_conversation(conversations) -> int | None:
    """The open conversation: chosen in this session, else from the URL, else the most recent."""
    if "chat_conversation" not in st.session_state:
        from_url = st.query_params.get("c", "")
        chosen = int(from_url) if from_url.isdigit() else None
        if chosen is None and conversations:
            chosen = conversations[0].id
        open_conversation(chosen)
    return st.session_state["chat_conversation"]


def sidebar(conversations, conversation_id) -> None:
    with st.sidebar:
        st.button("New chat", icon=":material/add:", key="chat_new", on_click=open_conversation, args=(None,),
                  use_container_width=True)
        for c in conversations:
            st.button(
                ui.plain_label(c.title), key=f"chat_open_{c.id}", on_click=open_conversation, args=(c.id,),
                type="primary" if c.id == conversation_id else "secondary", use_container_width=True,
            )
        if not conversations:
            st.caption("Your conversations will appear here.")


def header(backend, conversations, conversation_id) -> None:
    titles = {c.id: c.title for c in conversations}
    st.title(ui.plain_label(titles.get(conversation_id, "New chat")))
    if backend.engine == "notes":
        st.caption(
            f"Answering from your notes in `{settings.notes_dir}`. "
            "To answer with a Langflow flow, set `LANGFLOW_URL`, `LANGFLOW_FLOW_ID` and `LANGFLOW_API_KEY` (see the README)."
        )
    else:
        st.caption(f"Answering with the Langflow flow {ui.plain_label(backend.label)}.")


def manage(conversation) -> None:
    """Rename or delete the open conversation, in the sidebar."""
    with st.sidebar.expander("Manage this chat"):
        new_title = st.text_input("Title", value=conversation.title, key=f"chat_title_{conversation.id}")
        if st.button("Rename", key="chat_rename") and new_title != conversation.title:
            try:
                with db.begin() as session:
                    store.rename_conversation(session, actor, conversation.id, new_title)
                st.rerun()
            except ChatbotError as exc:
                ui.show_error(exc, doing="renaming")
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


def transcript(conversation_id, streaming) -> list:
    """The saved messages (but the answer streaming now, drawn live below); returns them."""
    if conversation_id is None:
        return []
    try:
        with db.begin() as session:
            conversation = store.get_conversation(session, actor, conversation_id)
            messages = store.list_messages(session, actor, conversation_id, limit=st.session_state["chat_limit"] + 1)
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
            ui.message_body(m)
            if m.role == "assistant":
                st.caption(ui.plain_label(ui.message_caption(m)))
                feedback_widgets(m, feedback.get(m.id))
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


with db.begin() as session:
    conversations = store.list_conversations(session, actor)
conversation_id = current_conversation(conversations)
sidebar(conversations, conversation_id)
try:
    backend = resources.backend(settings)
except ChatbotError as exc:
    ui.show_error(exc, doing="starting the answering engine")
    st.stop()
header(backend, conversations, conversation_id)

streaming = live.running(db, actor, conversation_id)  # before the transcript is read: see transcript()
messages = transcript(conversation_id, streaming)
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
