"""The chatbot's exceptions: each carries a message a person can act on.

    ChatbotError                 every error the app shows a user
     ├── ConfigError             a setting is missing or malformed (names the setting)
     ├── InputError              a question, file or command argument is refused
     ├── NotFoundError           no such conversation/user *for this user*
     ├── SignInRefused           single sign-on worked, but this app does not let them in
     ├── StoreError              the database could not be reached or refused a write
     └── EngineError             the answering engine failed
          ├── NotesError         the built-in notes engine could not read its notes
          └── LangflowError      anything that went wrong talking to Langflow
               ├── LangflowUnreachable   connection refused, DNS failure, TLS error
               ├── LangflowTimeout       no answer (or no next token) within the timeout
               ├── LangflowAuthError     HTTP 401/403: wrong or missing API key
               ├── LangflowNotFound      HTTP 404: unknown flow id / endpoint name
               ├── LangflowRejected      HTTP 422 and other 4xx: the request was refused
               ├── LangflowRateLimited   HTTP 429 (``retry_after`` seconds, when given)
               ├── LangflowUnavailable   HTTP 502/503/504 from Langflow or a proxy
               ├── LangflowFlowError     the flow ran and failed (500, or an ``error`` event)
               └── LangflowBadResponse   an answer we cannot read (not JSON, wrong shape,
                                         stream without ``end``, foreign session id)

``str(error)`` is the user-facing message. Details for the log go in ``error.detail``;
neither ever contains an API key or a password.
"""

from __future__ import annotations


class ChatbotError(Exception):
    """Base class: ``str(self)`` is safe to show to the user."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class ConfigError(ChatbotError):
    """A setting is missing or malformed; ``setting`` names it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class InputError(ChatbotError):
    """Input refused before anything was sent or stored."""


class NotFoundError(ChatbotError):
    """The thing does not exist, or does not belong to the acting user."""


class SignInRefused(ChatbotError):
    """The provider vouched for the user, and this app refuses them (deactivated, domain)."""


class StoreError(ChatbotError):
    """The database failed; the action can be retried."""


class EngineError(ChatbotError):
    """The engine that answers questions failed."""


class NotesError(EngineError):
    """The notes folder could not be read."""


class LangflowError(EngineError):
    """Talking to Langflow failed."""


class LangflowUnreachable(LangflowError):
    pass


class LangflowTimeout(LangflowError):
    pass


class LangflowAuthError(LangflowError):
    pass


class LangflowNotFound(LangflowError):
    pass


class LangflowRejected(LangflowError):
    pass


class LangflowRateLimited(LangflowError):
    def __init__(self, message: str, *, retry_after: float | None = None, detail: str | None = None):
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class LangflowUnavailable(LangflowError):
    pass


class LangflowFlowError(LangflowError):
    pass


class LangflowBadResponse(LangflowError):
    pass
