"""Past conversations as data, one module per noun: the filters and the search syntax, the searched
page, transcripts, export rows, usage, tags, notes, saved views and evaluation sets.

Every function takes ``session`` and the acting ``Actor`` and never commits. Which conversations an
actor may see is ``store.visible_to`` (their own; an admin everyone's), used by every query here.
Deleted conversations are hidden from analysts and shown to admins only when they ask (to purge).
"""

from chatbot.history import evaluation, notes, tags, views
from chatbot.history.exports import count_export_rows, iter_export_frames, record_export, write_export
from chatbot.history.filters import (
    FEEDBACK_LABELS,
    LAST_DAY,
    MAX_SEARCH_CHARS,
    PARAMS,
    SORT_LABELS,
    STATUS_LABELS,
    HistoryFilter,
    described,
    flow_and_version,
    no_match,
    searched,
)
from chatbot.history.page import TABLE_COLUMNS, MatchCount, engines, flow_versions, list_history
from chatbot.history.syntax import HINT
from chatbot.history.transcript import Transcript, TranscriptMessage, transcript
from chatbot.history.usage import PER_USER_COLUMNS, Usage, usage

__all__ = [
    "FEEDBACK_LABELS", "HINT", "LAST_DAY", "MAX_SEARCH_CHARS", "PARAMS", "PER_USER_COLUMNS", "SORT_LABELS",
    "STATUS_LABELS", "TABLE_COLUMNS", "HistoryFilter", "MatchCount", "Transcript", "TranscriptMessage", "Usage",
    "count_export_rows", "described", "engines", "evaluation", "flow_and_version", "flow_versions",
    "iter_export_frames", "list_history", "no_match", "notes", "record_export", "searched", "tags", "transcript",
    "usage", "views", "write_export",
]  # fmt: skip
