"""History page: the user's conversations (issue #3 makes this the full browser and export)."""

import pandas as pd
import streamlit as st

import ui
from chatbot import resources, store

actor = ui.require_actor()
settings = resources.settings()
db = resources.database(settings.database_url)

st.title("History")
with db.begin() as session:
    conversations = store.list_conversations(session, actor, limit=500)
frame = pd.DataFrame(
    [{"Title": c.title, "Started": c.created_at, "Last activity": c.updated_at, "Messages": c.message_count}
     for c in conversations],
    columns=["Title", "Started", "Last activity", "Messages"],
)
st.caption(f"{len(frame)} conversations")
st.dataframe(frame, hide_index=True, key="history_table")
