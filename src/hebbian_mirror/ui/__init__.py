"""The web UI: a Streamlit page that talks to a running Hebbian Mirror server over HTTP."""
