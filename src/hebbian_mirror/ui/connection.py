"""The sidebar's server address and API key, shared by every page of the UI."""

from __future__ import annotations

import streamlit as st

from hebbian_mirror.config import Settings, load_settings
from hebbian_mirror.ui.client import Answers, Client


def connection(settings: Settings | None = None) -> Client:
    """The server's address and key fields in the sidebar, and a client for them (the key the page was started
    with when the field is empty; it is never sent to the browser)."""
    settings = settings or load_settings()  # read per run: `ui` hands them on through the environment
    default_api, configured_key = settings.ui_api, settings.ui_api_key or None
    st.sidebar.title("Hebbian Mirror")
    url = st.sidebar.text_input("Server", default_api, key="api_url", help="The Hebbian Mirror server's address.")
    key = st.sidebar.text_input(
        "API key",
        "",
        key="api_key",
        type="password",
        help="Only if the server has one."
        + (" Left empty, the page uses the key it was started with." if configured_key else ""),
    )
    if configured_key and not key:
        st.sidebar.caption("Using the API key the page was started with.")
    answers = st.session_state.setdefault("answers", Answers())
    return Client(url, key or configured_key, answers=answers)
