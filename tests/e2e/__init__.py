"""Browser tests: the real app under `streamlit run`, driven by Playwright in Chromium."""
