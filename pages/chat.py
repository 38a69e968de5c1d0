"""Chat page: conversations in the sidebar, the transcript, the question box, the streaming answer."""

import time

import streamlit as st

import ui
from chatbot import chat, resources, store
from chatbot.errors import ChatbotError
from chatbot.render import escape_html, safe_markdown

RECENT = 50  # messages shown at first; older ones on demand
REDRAW_SECONDS = 0.05  # at most 20 redraws a second while an answer streams

actor = ui.require_actor()
settings = resources.settings()
db = resources.database(settings.database_url, settings.db_pool_size)

if "chat_limit" not in st.session_state:
    st.session_state["chat_limit"] = RECENT


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


def conversation_title(conversations, conversation_id) -> str:
    titles = {c.id: c.title for c in conversations}
    return titles.get(conversation_id, "New chat")


# -- sidebar: conversations ------------------------------------------------------------
with db.begin() as session:
    conversations = store.list_conversations(session, actor)
conversation_id = current_conversation(conversations)

with st.sidebar:
    st.button("New chat", icon=":material/add:", key="chat_new", on_click=open_conversation, args=(None,), use_container_width=True)
    for c in conversations:
        st.button(
            c.title, key=f"chat_open_{c.id}", on_click=open_conversation, args=(c.id,),
            type="primary" if c.id == conversation_id else "secondary", use_container_width=True,
        )
    if not conversations:
        st.caption("Your conversations will appear here.")

# -- header ----------------------------------------------------------------------------
try:
    backend = resources.backend(settings)
except ChatbotError as exc:
    ui.show_error(exc, doing="starting the answering engine")
    st.stop()

st.title(conversation_title(conversations, conversation_id))
if backend.engine == "notes":
    st.caption(
        f"Answering from your notes in `{settings.notes_dir}`. "
        "To answer with a Langflow flow, set `LANGFLOW_URL`, `LANGFLOW_FLOW_ID` and `LANGFLOW_API_KEY` (see the README)."
    )
else:
    st.caption(f"Answering with the Langflow flow `{backend.label}`.")

# -- the open conversation: manage, then the transcript ----------------------------------
messages, feedback = [], {}
if conversation_id is not None:
    try:
        with db.begin() as session:
            conversation = store.get_conversation(session, actor, conversation_id)
            messages = store.list_messages(session, actor, conversation_id, limit=st.session_state["chat_limit"] + 1)
            feedback = store.feedback_for(session, actor, [m.id for m in messages])
    except ChatbotError as exc:
        ui.show_error(exc, doing="opening the conversation")
        open_conversation(None)
        st.stop()
    with st.sidebar.expander("Manage this chat"):
        new_title = st.text_input("Title", value=conversation.title, key=f"chat_title_{conversation_id}")
        if st.button("Rename", key="chat_rename") and new_title != conversation.title:
            try:
                with db.begin() as session:
                    store.rename_conversation(session, actor, conversation_id, new_title)
                st.rerun()
            except ChatbotError as exc:
                ui.show_error(exc, doing="renaming")
        if st.button("Delete", key="chat_delete"):
            st.session_state["chat_confirm_delete"] = conversation_id
        if st.session_state.get("chat_confirm_delete") == conversation_id:
            st.warning("Delete this conversation? It disappears from your lists and exports.")
            if st.button("Yes, delete it", key="chat_delete_confirm", type="primary"):
                with db.begin() as session:
                    store.delete_conversation(session, actor, conversation_id)
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


if len(messages) > st.session_state["chat_limit"]:
    messages = messages[1:]
    if st.button("Show older messages", key="chat_older"):
        st.session_state["chat_limit"] += RECENT * 4
        st.rerun()

for m in messages:
    with st.chat_message(m.role):
        ui.message_body(m)
        if m.role == "assistant":
            st.caption(ui.message_caption(m))
            given = feedback.get(m.id)
            st.feedback("thumbs", key=f"chat_fb_{m.id}", default=given.score if given else None,
                        on_change=save_feedback, args=(m.id,))
            if st.session_state.get(f"chat_fb_{m.id}") is not None or given:
                st.text_input("Comment (optional)", key=f"chat_fb_comment_{m.id}",
                              value=given.comment if given and given.comment else "",
                              on_change=save_feedback, args=(m.id,))

last = messages[-1] if messages else None
if last is not None and last.role == "assistant" and last.status != "complete":
    retry_clicked = st.button("Retry", icon=":material/refresh:", key="chat_retry")
elif last is not None and last.role == "user":  # the question was saved but never answered
    st.info("This question has no answer yet.")
    retry_clicked = st.button("Retry", icon=":material/refresh:", key="chat_retry")
else:
    retry_clicked = False

# -- a new question, or a retry: save, stream, save ------------------------------------------
prompt = st.chat_input("Ask a question about your notes" if backend.engine == "notes" else "Ask a question",
                       key="chat_input")
turn = None
try:
    if prompt is not None:
        turn = chat.ask(db, actor, conversation_id, prompt, backend, max_chars=settings.max_message_chars)
        if turn is None:
            st.toast("Type a question first.")
    elif retry_clicked:
        turn = chat.retry(db, actor, conversation_id, backend)
except ChatbotError as exc:
    ui.show_error(exc, doing="sending your question")
    if prompt:
        st.caption("Your question, so you can copy it:")
        st.code(prompt, language=None)

if turn is not None:
    if turn.conversation_id != conversation_id:
        open_conversation(turn.conversation_id)
    if prompt is not None:
        with st.chat_message("user"):
            st.markdown(escape_html(turn.question))
    with st.chat_message("assistant"):
        slot = st.empty()
        slot.status("Thinking…", state="running")
        stream = turn.chunks()
        try:
            shown, drawn = "", 0.0
            for chunk in stream:  # the whole text is made safe at each update: a link can span chunks
                shown += chunk
                if time.monotonic() - drawn >= REDRAW_SECONDS:
                    slot.markdown(safe_markdown(shown) + " ▌")
                    drawn = time.monotonic()
        finally:
            stream.close()  # the user left mid-answer: the partial answer is saved as interrupted
        slot.markdown(safe_markdown(turn.text))
    st.rerun()  # show the saved answer from the database, with its status, error and feedback
