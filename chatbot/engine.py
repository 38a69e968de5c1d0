"""What every answering engine (Langflow, the notes engine) yields, and the protocol they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Token:
    """A piece of the answer as it arrives; shown live, never stored on its own.

    ``output`` names the output it belongs to (Langflow's message id): a flow with several
    Chat Outputs streams them at once, and their tokens interleave.
    """

    text: str
    output: str = field(default="", compare=False)  # equal tokens: the same text


@dataclass(frozen=True)
class Output:
    """One output of an answer: a flow's Chat Output, with the component that wrote it."""

    text: str
    label: str = ""  # the component's display name ("Chat Output", or what the flow named it)
    component_id: str = ""
    usage: dict | None = None


@dataclass(frozen=True)
class Step:
    """One tool call of an agent, as it runs and as it ended.

    ``status`` is "running", "success" or "error"; ``duration_ms`` is the tool's own run time
    when Langflow reports it, else the time between its start and end events.
    """

    name: str
    input: object = None
    output: object = None
    status: str = "running"
    duration_ms: int | None = None
    error: str | None = None

    def stored(self) -> dict:
        """The step as ``messages.steps`` keeps it."""
        return {"name": self.name, "input": self.input, "output": self.output, "status": self.status,
                "duration_ms": self.duration_ms, "error": self.error}


@dataclass(frozen=True)
class Progress:
    """What the flow is doing while no answer text has come: the step running now ("Calling
    evaluate_expression…") and the agent's steps so far. Shown live, stored only in the Answer."""

    doing: str = ""
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Answer:
    """The final answer: the last item of a stream, and what is stored.

    ``text`` is the whole answer as one Markdown text; with several ``outputs`` it holds each
    under its label, so search, exports and any reader see all of them.
    """

    text: str
    usage: dict | None = None  # {"input_tokens", "output_tokens", "total_tokens"} when known
    sources: tuple[str, ...] = field(default_factory=tuple)  # cited note files, if any
    outputs: tuple[Output, ...] = ()  # set only when there are several
    steps: tuple[Step, ...] = ()  # an agent's tool calls, in order
    model: str | None = None  # the model that wrote it (Langflow's properties.source), when known
    run_id: str | None = None  # Langflow's run id


def repaired(text: str) -> str:
    """Text as valid Unicode: a surrogate pair split over two tokens joined again, a lone
    surrogate (which no database or browser takes) replaced by U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def combined_text(outputs: list[Output] | tuple[Output, ...]) -> str:
    """Several outputs as one Markdown text: each under its bold label, in the flow's order."""
    if len(outputs) == 1:
        return outputs[0].text
    return "\n\n".join(f"**{o.label or f'Output {n}'}**\n\n{o.text}" for n, o in enumerate(outputs, 1))


def summed_usage(usages: list[dict | None]) -> dict | None:
    """Token usage added up over outputs; None when no output reported any."""
    known = [u for u in usages if u]
    if not known:
        return None
    keys = ("input_tokens", "output_tokens", "total_tokens")
    return {k: sum(u.get(k) or 0 for u in known) for k in keys if any(u.get(k) is not None for u in known)}


@dataclass(frozen=True)
class Attachment:
    """A file attached to a question, on its way to the engine."""

    name: str
    type: str  # MIME type, as the browser said
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


class ChatBackend(Protocol):
    """An engine the chat page can ask. ``stream`` yields Tokens and Progress, then exactly one Answer.

    Errors are raised as ``chatbot.errors.EngineError`` subclasses. Closing the generator
    early (the user left) must release the underlying connection. ``tweaks`` (Langflow's, by
    component id) are sent with the question; an engine without them ignores them.
    """

    engine: str  # "langflow" or "notes"
    label: str  # what the page shows as the source: the flow id, or "notes"

    def stream(
        self, question: str, *, session_id: str, tweaks: dict | None = None
    ) -> Iterator[Token | Progress | Answer]: ...
