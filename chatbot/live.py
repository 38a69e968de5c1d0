"""Answers streaming in background threads, so that no rerun of the page can end one.

A Streamlit rerun (a click, a component reporting back, the URL changing) stops the script
that is running. An answer streamed by the script itself was cut off by any such rerun, so
each answer streams in a thread of its own here; the page only draws what has arrived, and a
rerun draws it again from where it is. Stop is an explicit request (``LiveAnswer.stop``).

The registry is per process: a replica serves its own sessions (the load balancer keeps a
browser on one replica), and another replica's reader sees the answer as saved so far.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from chatbot.chat import Turn
from chatbot.engine import Progress
from chatbot.store import Actor

logger = logging.getLogger(__name__)

LIVE_CHARS = 20_000  # of each output shown while it streams: a redraw costs the same at any length
_running: dict[tuple[int, int], LiveAnswer] = {}  # (id of the database, conversation id) -> its answer
_lock = threading.Lock()


@dataclass
class LiveAnswer:
    """A Turn streaming in its own thread."""

    turn: Turn
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def message_id(self) -> int | None:
        return self.turn.message_id

    def outputs(self) -> list[tuple[str, int]]:
        """What has arrived so far: per output, its newest LIVE_CHARS characters and its length."""
        return self.turn.live_outputs(tail=LIVE_CHARS)

    @property
    def progress(self) -> Progress:
        """What an agent is doing now, and its steps so far."""
        return self.turn.progress

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the end of the answer; True once it is saved."""
        return self.done.wait(seconds)

    def stop(self) -> None:
        """End the answer at its next event; it is saved as stopped and Langflow's run cancelled."""
        self.turn.stop()

    @property
    def stopping(self) -> bool:
        return self.turn.stopping

    def _run(self) -> None:
        try:
            for _chunk in self.turn.chunks():
                pass
        except Exception:  # a database failure while saving: logged, and the reader is released
            logger.exception("the answer %s could not be saved", self.turn.message_id)
        finally:
            key = _key(self.turn.db, self.turn.conversation_id)
            with _lock:
                if _running.get(key) is self:
                    del _running[key]
            self.done.set()


def _key(db: sessionmaker[Session], conversation_id: int) -> tuple[int, int]:
    return id(db), conversation_id


def start(turn: Turn) -> LiveAnswer:
    """Save the answer's row, then stream it in a thread; returns at once."""
    turn.begin()
    live = LiveAnswer(turn)
    with _lock:
        _running[_key(turn.db, turn.conversation_id)] = live
    threading.Thread(target=live._run, name=f"answer-{turn.message_id}", daemon=True).start()
    return live


def running(db: sessionmaker[Session], actor: Actor, conversation_id: int | None) -> LiveAnswer | None:
    """The answer streaming now in the actor's conversation, if any (only its owner sees it)."""
    if conversation_id is None:
        return None
    with _lock:
        live = _running.get(_key(db, conversation_id))
    if live is None or live.turn.actor.id != actor.id or live.done.is_set():
        return None
    return live
