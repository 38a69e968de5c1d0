"""What every answering engine (Langflow, the notes engine) yields, and the protocol they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Token:
    """A piece of the answer as it arrives; shown live, never stored on its own."""

    text: str


@dataclass(frozen=True)
class Answer:
    """The final answer: the last item of a stream, and what is stored."""

    text: str
    usage: dict | None = None  # {"input_tokens", "output_tokens", "total_tokens"} when known
    sources: tuple[str, ...] = field(default_factory=tuple)  # cited note files, if any


class ChatBackend(Protocol):
    """An engine the chat page can ask. ``stream`` yields Tokens then exactly one Answer.

    Errors are raised as ``chatbot.errors.EngineError`` subclasses. Closing the generator
    early (the user left) must release the underlying connection.
    """

    engine: str  # "langflow" or "notes"
    label: str  # what the page shows as the source: the flow id, or "notes"

    def stream(self, question: str, *, session_id: str) -> Iterator[Token | Answer]: ...
