"""Replays page: past questions asked again of another flow in the background, the answers compared side by side.

No replay open (no ``?replay=`` in the URL): the list of replays and the form that starts one. A replay
open: its progress while it runs, the summary, the rows with their verdicts, and the downloads.
"""


import functools
from urllib.parse import parse_qs

import pandas as pd
import streamlit as st

import ui
from chatbot import flows, resources
from chatbot.config import NOTES
from chatbot.errors import ChatbotError
from chatbot.history import HistoryFilter, views
from chatbot.replays import compare, jobs

POLL_SECONDS = 1.0  # how often a running replay's progress is read
ROWS_PER_PAGE = 20
TALL_CHARS = 700  # an answer longer than this scrolls inside a box of SIDE_HEIGHT pixels
SIDE_HEIGHT = 360
METRIC_WIDTH = 140  # px: five to a line beside the sidebar at 1280 px, two on a phone
ACTIVE = ("queued", "running")
SHOW_LABELS = {"all": "All", "changed": "Changed", "worse": "Worse", "original_down": "Original 👎",
               "errors": "Errors", "unjudged": "Unjudged"}  # fmt: skip
VERDICT_LABELS = {"better": "Better", "same": "Same", "worse": "Worse"}
VERDICT_ICONS = {"better": ":material/thumb_up:", "same": ":material/drag_handle:", "worse": ":material/thumb_down:"}
MODE_LABELS = {"context": "Earlier turns first", "questions": "Questions only"}
SOURCE_LABELS = {"view": "A saved view", "filters": "The history filters in the link", "file": "An evaluation file"}
STATUS_LABELS = {"queued": "Queued", "running": "Running", "done": "Done", "cancelled": "Cancelled", "failed": "Failed"}
LIST_CONFIG = {
    "name": st.column_config.TextColumn("Replay", width="medium"),
    "owner": st.column_config.TextColumn("Owner", width="small"),
    "status": st.column_config.TextColumn("Status", width="small"),  # before the flow: a phone shows them first
    "progress": st.column_config.ProgressColumn("Done", format="%.0f%%", min_value=0, max_value=100, width="small"),
    "flow_label": st.column_config.TextColumn("Flow", width="medium"),
    "errors": st.column_config.NumberColumn("Errors", width="small"),
    "created_at": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD HH:mm", width="small"),
}

actor = ui.require_actor()
settings = resources.settings()
db = resources.database(settings.database_url, settings.db_pool_size)
readonly = resources.readonly_database(settings.database_url, settings.db_pool_size)
directory = resources.flow_directory(settings.langflow_url, settings.langflow_api_key, settings.langflow_timeout) \
    if settings.uses_langflow else None


def open_replay(replay_id: int | None) -> None:
    """Show this replay (None: the list); the URL says which, so it can be bookmarked and reloaded."""
    st.query_params.clear()
    if replay_id is not None:
        st.query_params["replay"] = str(replay_id)
    for key in ("replays_open", "replays_page", "replays_show", "replays_diff", "replays_table"):
        st.session_state.pop(key, None)


def replay_asked_for() -> int | None:
    wanted = st.query_params.get("replay", "")
    return int(wanted) if wanted.isdigit() else (0 if wanted else None)


# -- the list ------------------------------------------------------------------------------------
def replay_list() -> None:
    """The replays the actor sees, newest first; picking a row opens it."""
    with readonly.begin() as session:
        replays = jobs.list_replays(session, actor)
    if not replays:
        st.info("No replays yet: start one below.", icon=":material/compare_arrows:")
        return
    frame = pd.DataFrame({
        "id": [r.id for r in replays], "name": [r.name for r in replays], "owner": [r.owner for r in replays],
        "flow_label": [r.flow_label for r in replays], "status": [STATUS_LABELS.get(r.status, r.status) for r in replays],
        "progress": [100 * r.done / r.total if r.total else 100 for r in replays],
        "errors": [r.errors for r in replays], "created_at": [r.created_at for r in replays],
    })  # fmt: skip
    shown = [c for c in LIST_CONFIG if c != "owner" or actor.is_admin]
    ids = frame["id"].tolist()
    st.dataframe(frame, key="replays_table", on_select=lambda: pick_replay(ids), selection_mode="single-row", hide_index=True, column_config=LIST_CONFIG, column_order=shown,
                 width="stretch")
    st.caption("Pick a row to open its comparison.")


def pick_replay(ids: list[int]) -> None:
    picked = st.session_state["replays_table"]["selection"]["rows"]
    if picked and picked[0] < len(ids):
        open_replay(ids[picked[0]])


# -- a new replay --------------------------------------------------------------------------------
def keep_if_offered(key: str, options: list) -> None:
    """Forget a widget's value that is no longer among its options (a view deleted, the history link
    gone, a flow out of the catalog): the widget starts again at its default."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def linked_filters() -> HistoryFilter | None:
    """The history filters the history page's "Replay these questions" passed: ?history=<the history
    page's query>, e.g. ?history=history_search%3Dchurn, or ?history= for every conversation; None without."""
    if "history" not in st.query_params:
        return None
    return HistoryFilter.from_query_params(parse_qs(st.query_params["history"][:ui.MAX_PARAM_CHARS]))


def flow_problem(key: str) -> str | None:
    return None if key == NOTES or directory is None else directory.problem(key)


def flow_info(key: str):
    return None if key == NOTES or directory is None or flow_problem(key) else directory.info(key, fresh=False)


def flow_picker() -> tuple[str, str]:
    """The catalog flow to ask (unavailable ones marked, as on the chat page) and its label."""
    choices = settings.choices() or [NOTES]
    labels = {key: flows.label_of(settings, key, flow_info(key)) for key in choices}
    problems = {key: flow_problem(key) for key in choices}
    keep_if_offered("replays_flow", choices)
    key = st.selectbox("Ask", choices, key="replays_flow", help="The flow (or version) the questions are asked again.",
                       format_func=lambda k: labels[k] + (" (unavailable)" if problems[k] else ""))
    if problems[key]:
        st.warning(ui.plain_text(f"This flow looks unavailable now: {problems[key]}. The replay's questions may fail."),
                   icon=":material/cloud_off:")
    return key, labels[key]


def mode_picker(flow: str) -> str:
    if flow == NOTES:
        st.radio("Conversation context", ["questions"], format_func=MODE_LABELS.get, key="replays_mode_notes",
                 disabled=True, horizontal=True)
        st.caption("The notes engine has no memory: each question is asked alone.")
        return "questions"
    return st.radio("Conversation context", list(MODE_LABELS), format_func=MODE_LABELS.get, key="replays_mode",
                    horizontal=True, help="Earlier turns first: each question is asked in a fresh session after the "
                    "conversation's earlier questions, as the original was. Questions only: each on its own.")


def admin_tweaks(flow: str) -> dict | None:
    """Admins only, as on the chat page: tweaks sent with every question of the replay."""
    if not actor.is_admin or flow == NOTES:
        return None
    text = st.text_area("Tweaks (JSON, by component id)", key="replays_tweaks", height=90,
                        placeholder='{"OpenAIModel-x1y2z": {"temperature": 0.2}}',
                        help="Sent with every question of this replay, over the catalog's own.")
    return flows.admin_tweaks(text, flow_info(flow))


def source_picker(linked: HistoryFilter | None):
    """Where the questions come from; returns (what reads them, source text, filters to keep)."""
    kinds = ["view", "file"] if linked is None else ["filters", "view", "file"]
    keep_if_offered("replays_source", kinds)
    kind = st.segmented_control("Questions from", kinds, format_func=SOURCE_LABELS.get, key="replays_source",
                                default=kinds[0], required=True)
    limit = settings.replay_max_questions
    if kind == "filters":
        st.caption(ui.plain_text("History filters: " + linked.describe()))
        return (lambda session: (jobs.questions_from_filters(session, actor, linked, limit=limit), []),
                f"history filters: {linked.describe()}", linked.to_query_params())
    if kind == "view":
        with readonly.begin() as session:
            saved = views.list_views(session, actor)
        if not saved:
            st.caption("No saved views yet: filter the History page, then save the view.")
            return None, "", None
        keep_if_offered("replays_view", saved)
        view = st.selectbox("Saved view", saved, format_func=lambda v: v.label, key="replays_view")
        return (lambda session: (jobs.questions_from_filters(session, actor, view.filters, limit=limit), []),
                f"view “{view.name}”", view.filters.to_query_params())
    upload = st.file_uploader("Evaluation file (JSONL or CSV from the History page)", type=["jsonl", "csv"],
                              key="replays_file")
    if upload is None:
        return None, "", None
    data = upload.getvalue()
    return (lambda session: jobs.questions_from_file(session, actor, upload.name, data, limit=limit),
            f"file {upload.name}", None)


def new_replay(linked: HistoryFilter | None) -> None:
    """The form: questions, flow, mode, tweaks, name; how many questions it asks; Start."""
    with st.container(border=True, key="replays_new"):
        st.subheader("New replay", anchor=False)
        read, source, filters = source_picker(linked)
        flow, label = flow_picker()
        mode = mode_picker(flow)
        name = st.text_input("Name (optional)", key="replays_name", max_chars=jobs.NAME_CHARS,
                             placeholder=f"{source or 'questions'} → {label}")
        try:
            tweaks = admin_tweaks(flow)
            questions, notices = read_questions(read)
        except ChatbotError as exc:
            ui.show_error(exc, doing="planning the replay")
            return
        if questions is None:
            return
        for notice in notices:
            st.warning(ui.plain_text(notice), icon=":material/visibility_off:")
        many = len(questions)
        st.caption(f"This replay asks {many} question{'s' if many != 1 else ''} of {ui.plain_text(label)}.")
        if st.button("Start the replay", key="replays_start", type="primary", icon=":material/play_arrow:"):
            start(questions, flow=flow, flow_label=label, source=source, name=name.strip() or None, mode=mode,
                  tweaks=tweaks, filters=filters)


def read_questions(read):
    """The questions the form's source holds (None: no source picked yet), and notices."""
    if read is None:
        return None, []
    with readonly.begin() as session:
        return read(session)


def start(questions, **replay) -> None:
    try:
        with db.begin() as session:
            made = jobs.create_replay(session, actor, questions, **replay).id
    except ChatbotError as exc:
        ui.show_error(exc, doing="starting the replay")
        return
    st.toast("Replay started: it runs in the background, you can leave this page.")
    open_replay(made)
    st.rerun()


# -- one replay ----------------------------------------------------------------------------------
def opened(replay_id: int):
    """The replay, read (and for an admin's look at another's, audited) once per opening."""
    kept = st.session_state.get("replays_open")
    if kept is None or kept.id != replay_id:
        with db.begin() as session:
            kept = jobs.get_replay(session, actor, replay_id)
        st.session_state["replays_open"] = kept
    return kept


def change(action, target: int, *, doing: str, done: str = "") -> bool:
    """One change of a replay (``action(session, actor, target)``) in its own transaction, from a
    widget's callback: a refusal is shown on the run that follows, a success as ``done``."""
    try:
        with db.begin() as session:
            action(session, actor, target)
    except ChatbotError as exc:
        st.session_state["replays_error"] = (exc, doing)
        return False
    if done:
        st.toast(done)
    return True


def delete(replay_id: int) -> None:
    if change(jobs.delete_replay, replay_id, doing="deleting the replay", done="Replay deleted."):
        open_replay(None)


def header(replay) -> None:
    bar = st.container(horizontal=True, horizontal_alignment="distribute", vertical_alignment="center")
    bar.button("All replays", key="replays_back", icon=":material/arrow_back:", on_click=open_replay, args=(None,),
               type="tertiary")
    with bar.popover("Delete", icon=":material/delete:"):
        st.caption("Delete this replay, its answers and verdicts? The original conversations stay as they are.")
        st.button("Yes, delete it", key="replays_delete", type="primary", on_click=delete, args=(replay.id,))
    st.title(ui.plain_text(replay.name), anchor=False)
    tweaked = " · with tweaks" if replay.tweaks else ""
    st.caption(ui.plain_text(f"Questions from {replay.source}, asked of {replay.flow_label} · "
                             f"{MODE_LABELS.get(replay.mode, replay.mode).lower()}{tweaked} · "
                             f"started {replay.created_at:%Y-%m-%d %H:%M} UTC"))


@st.fragment(run_every=POLL_SECONDS)
def progress_bar(replay_id: int, seen_done: int) -> None:
    """While the replay runs: its progress, read every POLL_SECONDS; the whole page again when a
    question has finished (its row fills in) or the replay ended."""
    with readonly.begin() as session:
        now = jobs.progress(session, actor, replay_id)
    if now.status not in ACTIVE or now.done != seen_done:
        st.rerun(scope="app")
    failed = f" · {now.errors} failed" if now.errors else ""
    st.progress(now.fraction, text=f"{STATUS_LABELS[now.status]}: {now.done} of {now.total} questions{failed}")


def cancel(replay_id: int) -> None:
    change(jobs.cancel_replay, replay_id, doing="cancelling the replay", done="Replay cancelled.")


def running(replay_id: int, status: str, done: int) -> None:
    if status not in ACTIVE:
        return
    bar, stop = st.columns([5, 1], vertical_alignment="bottom")
    with bar:
        progress_bar(replay_id, done)
    stop.button("Cancel", key="replays_cancel", icon=":material/stop_circle:", on_click=cancel, args=(replay_id,),
                width="stretch")


def milliseconds(value: int | None) -> str:
    return "–" if value is None else ui.duration(value)


def share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def faster(replayed: int | None, original: int | None) -> str | None:
    """The metric's delta: '-300 ms' when the replay was faster."""
    if replayed is None or original is None or replayed == original:
        return None
    return ("-" if replayed < original else "+") + ui.duration(abs(replayed - original))


def summary(numbers: compare.Summary) -> None:
    """The verdicts, then each side's errors and timing: the replayed value, the arrow against the original."""
    # Rows that wrap: a phone shows two numbers a line, not one.
    verdicts = st.container(horizontal=True, gap="small", key="replays_verdicts")
    for label, count in (("Better", numbers.better), ("Same", numbers.same), ("Worse", numbers.worse),
                         ("Unjudged", numbers.unjudged)):
        verdicts.metric(label, count, width=METRIC_WIDTH)
    verdicts.metric("Answers changed", share(numbers.changed_share), width=METRIC_WIDTH,
                    help=f"{numbers.changed} of the {numbers.answered} replayed answers say something else.")
    timing = st.container(horizontal=True, gap="small", key="replays_timing")
    error_delta = None
    if None not in (numbers.replay_error_rate, numbers.original_error_rate) \
            and numbers.replay_error_rate != numbers.original_error_rate:
        error_delta = f"{100 * (numbers.replay_error_rate - numbers.original_error_rate):+.0f} points"
    timing.metric("Error rate", share(numbers.replay_error_rate), delta=error_delta, delta_color="inverse",
                  help=f"Original: {share(numbers.original_error_rate)}", width=METRIC_WIDTH)
    for label, replayed, original in (
        ("Latency p50", numbers.replay_latency_p50_ms, numbers.original_latency_p50_ms),
        ("Latency p95", numbers.replay_latency_p95_ms, numbers.original_latency_p95_ms),
        ("First token p50", numbers.replay_ttft_p50_ms, numbers.original_ttft_p50_ms),
    ):
        timing.metric(label, milliseconds(replayed), delta=faster(replayed, original), delta_color="inverse",
                      help=f"Original: {milliseconds(original)}", width=METRIC_WIDTH)
    st.caption(f"The replayed answers' numbers; each arrow compares with the originals' (error rate "
               f"{share(numbers.original_error_rate)}, latency p50 {milliseconds(numbers.original_latency_p50_ms)}, "
               f"p95 {milliseconds(numbers.original_latency_p95_ms)}).")


def save_verdict(item_id: int) -> None:
    verdict = st.session_state.get(f"replays_verdict_{item_id}")
    change(functools.partial(jobs.set_verdict, verdict=verdict), item_id, doing="saving the verdict")


def side_caption(flow, latency_ms, ttft_ms, tokens, status) -> str:
    """'Notes RAG v7 · 1.2 s · first token 300 ms · 50 tokens · complete'."""
    parts = [flow, latency_ms is not None and ui.duration(latency_ms),
             ttft_ms is not None and f"first token {ui.duration(ttft_ms)}", tokens and f"{tokens} tokens", status]
    return ui.plain_text(" · ".join(str(p) for p in parts if p))


def answer_box(text: str):
    """Where an answer goes: a long one scrolls in a box, so the two sides of a row stay side by side."""
    return st.container(height=SIDE_HEIGHT, border=False) if len(text) > TALL_CHARS else st.container()


def original_side(item) -> None:
    st.caption("**Original**")
    if item.original_answer:
        with answer_box(item.original_answer):
            ui.long_text(item.original_answer, key=f"replays_original_{item.id}")
    st.caption(side_caption(item.original_flow, item.original_latency_ms, item.original_ttft_ms, item.original_tokens,
                            item.original_status))
    if item.original_feedback is not None:
        comment = " ".join((item.original_comment or "").split())
        st.caption(ui.plain_text(("👍" if item.original_feedback else "👎") + (f" “{comment}”" if comment else "")))
    if item.corrected_answer:
        st.success(ui.plain_text(f"Should have said: {item.corrected_answer}"), icon=":material/edit_note:")


def replayed_side(item, *, diff: bool) -> None:
    st.caption("**Replayed**")
    if item.status in ("pending", "running"):
        st.caption("Waiting for its turn…" if item.status == "pending" else "Being asked now…")
        return
    if item.status == "cancelled":
        st.caption("Cancelled before it was asked.")
        return
    with answer_box(item.answer or ""):
        if diff and item.answer is not None:
            ui.word_diff(compare.diff_markdown(compare.word_diff(item.original_answer, item.answer)), key=str(item.id))
        elif item.answer:
            ui.long_text(item.answer, key=f"replays_answer_{item.id}")
    if item.status == "error":
        st.error(ui.plain_text(f"No answer: {item.error or 'the flow failed.'}"), icon=":material/error:")
    flow = " ".join(p for p in (item.flow_name, item.flow_version) if p)
    st.caption(side_caption(flow, item.latency_ms, item.ttft_ms, item.tokens, item.status))


def row(item, *, diff: bool) -> None:
    """One question: the two answers side by side (stacked on a phone), and its verdict."""
    with st.container(border=True, key=f"replays_row_{item.id}"):
        turns = len(item.context or [])
        earlier = f" · after {turns} earlier message{'s' if turns != 1 else ''}" if turns else ""
        st.caption(f"Question {item.position}{earlier}" + (" · changed" if compare.changed(item) else ""))
        ui.markdown(item.question)
        left, right = st.columns(2)
        with left:
            original_side(item)
        with right:
            replayed_side(item, diff=diff)
        if item.status in ("complete", "error"):
            st.segmented_control("Verdict: the replayed answer is", list(VERDICT_LABELS), default=item.verdict,
                                 format_func=lambda v: VERDICT_LABELS[v], key=f"replays_verdict_{item.id}",
                                 on_change=save_verdict, args=(item.id,))


def turn_page(step: int) -> None:
    st.session_state["replays_page"] += step


def rows(everything: list) -> None:
    """The rows the filter keeps, a page at a time, with the word diff toggle."""
    tools = st.columns([3, 1], vertical_alignment="bottom")
    show = tools[0].segmented_control("Show", list(SHOW_LABELS), format_func=SHOW_LABELS.get, key="replays_show",
                                      default="all", required=True, wrap=True)
    diff = tools[1].toggle("Word diff", key="replays_diff",
                           help="The replayed answer with its added words in green and removed ones struck in red.")
    kept = jobs.shown(everything, show)
    if st.session_state.get("replays_seen_show") != show:
        st.session_state.update(replays_seen_show=show, replays_page=0)
    pages = max(1, -(-len(kept) // ROWS_PER_PAGE))
    page = min(st.session_state.setdefault("replays_page", 0), pages - 1)
    if not kept:
        st.info("No questions of this replay match.", icon=":material/filter_alt_off:")
    for item in kept[page * ROWS_PER_PAGE:(page + 1) * ROWS_PER_PAGE]:
        row(item, diff=diff)
    if pages > 1:
        ui.pager("replays", page, pages, f"Page {page + 1} of {pages} · {len(kept)} questions", turn_page)


def downloads(replay) -> None:
    """The comparison in three formats, made when clicked; an admin's download of another's is audited."""
    def write(label: str):
        def into(session, out) -> None:
            compare.FORMATS[label].writer(compare.comparison_frame(jobs.items(session, actor, replay.id)), out)
        return into

    with st.popover("Download the comparison", icon=":material/download:"):
        st.caption("Both answers of every question, their timing and status, and the verdicts.")
        for fmt in compare.FORMATS.values():
            data = ui.download(write(fmt.label), audit=lambda session: compare.record_export(session, actor, replay.id),
                               db=db, read=readonly)
            st.download_button(fmt.label, data=data, file_name=compare.file_name(replay.name, fmt.extension),
                               mime=fmt.mime, key=f"replays_export_{fmt.extension}", on_click="ignore", width="stretch")


def show_replay(replay_id: int) -> None:
    replay = opened(replay_id)
    header(replay)
    with readonly.begin() as session:
        everything = jobs.items(session, actor, replay_id)
        now = jobs.progress(session, actor, replay_id)
    running(replay_id, now.status, now.done)
    if now.status == "cancelled":
        st.info(f"Cancelled after {now.done - sum(i.status == 'cancelled' for i in everything)} of {now.total} "
                "questions.", icon=":material/stop_circle:")
    if (failed := st.session_state.pop("replays_error", None)) is not None:
        ui.show_error(failed[0], doing=failed[1])
    summary(compare.summarize(everything))
    downloads(replay)
    rows(everything)


# -- the page: errors become messages here ------------------------------------------------------
wanted = replay_asked_for()
if wanted is None:
    st.title("Replays")
    st.caption("Ask past questions again of another flow or version, and compare the answers side by side.")
    try:
        replay_list()
        new_replay(linked_filters())
    except ChatbotError as exc:
        ui.show_error(exc, doing="listing the replays")
else:
    try:
        show_replay(wanted)
    except ChatbotError as exc:
        st.title("Replays")
        ui.show_error(exc, doing="opening the replay")
        st.button("All replays", key="replays_back_missing", icon=":material/arrow_back:", on_click=open_replay,
                  args=(None,))
