"""The st.cache_resource factories: one engine, and so one pool, per database and pool size."""

from __future__ import annotations

import streamlit as st

from chatbot import resources


def test_read_only_sessions_use_the_pool_of_the_configured_size(tmp_path):
    st.cache_resource.clear()
    url = f"sqlite:///{tmp_path / 'chatbot.db'}"
    try:
        engine = resources.database(url, 3).kw["bind"]
        readonly = resources.readonly_database(url, 3).kw["bind"]
        assert readonly.pool is engine.pool  # not a second engine with a default-sized pool
    finally:
        st.cache_resource.clear()
