"""A local Langflow stand-in streaming 500 tokens, in its own process: ``python -m bench.stream_server``.

Prints its URL on the first line, then serves until stdin closes. Every request gets the same
pre-built answer (Langflow's wire format from tests/replay_server.py) for session ``SESSION_ID``;
an optional argument is the pause before each event, in seconds (0 by default).
"""

from __future__ import annotations

import sys

from tests.replay_server import ReplayServer, stream_reply, streamed_run

TOKENS = 500
SESSION_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
QUESTION = "Summarise the churn dashboard"


def answer(delay: float):
    words = [f"word{i} " for i in range(TOKENS)]
    reply = stream_reply(streamed_run(words, session_id=SESSION_ID, question=QUESTION), delay=delay)
    return lambda request: reply


def main() -> None:
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    # TCP_NODELAY, as Langflow's server sets it (uvicorn, on asyncio, does for every connection).
    # Without it, each small event waits for the previous one's ACK, and a client that keeps its
    # connection alive (as LangflowClient does) gets delayed ACKs that Langflow never causes.
    with ReplayServer(default=answer(delay), nodelay=True) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    main()
