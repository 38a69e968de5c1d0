# The app as an image: one container per replica, behind a proxy with sticky sessions.
#
#   docker build -t chatbot .
#   docker run -p 8501:8501 -e DATABASE_URL=... -e AUTH_COOKIE_KEY=... chatbot
#
# compose.yaml runs two replicas, nginx, PostgreSQL and Langflow. Docker was not available
# where this file was written, so it has not been built there: deploy/run-replicas.sh and
# tests/deploy run the same design (replicas, nginx, one PostgreSQL) without containers.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Pinned, and copied first: the dependency layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code belongs to root and is read-only for the app; only data/ is the app's to write
# (nothing is written there with PostgreSQL and AUTH_COOKIE_KEY set).
RUN useradd --system --uid 10001 --create-home --home-dir /home/chatbot chatbot
COPY . .
RUN mkdir -p data && chown chatbot:chatbot data
USER chatbot

# The production profile: settings only from the environment (or a mounted
# /app/.streamlit/secrets.toml), JSON log lines on stdout, no file watching.
ENV CHATBOT_ENV=production \
    LOG_FORMAT=json \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_LOGGER_HIDE_WELCOME_MESSAGE=true

EXPOSE 8501
# Streamlit's own health endpoint: 200 "ok" once the server accepts sessions.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=2)"]

CMD ["python", "-m", "streamlit", "run", "serve.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true"]
