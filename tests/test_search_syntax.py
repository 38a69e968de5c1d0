"""The search box's language: any text parses, says what it left out, and round-trips through the URL."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.fulltext import Term
from chatbot.history import HistoryFilter, searched
from chatbot.history.syntax import parse

SEARCH_ALPHABET = st.sampled_from(list('abcvz019 "*-:<>.,?!()OR\t') + ["tag:", "fb:", "user:", "status:", "OR",
                                   "after:", "before:", "version:", "latency>", "flow:", "é", "漢", "_"])
searches = st.one_of(st.text(max_size=120), st.lists(SEARCH_ALPHABET, max_size=40).map("".join))


@settings(max_examples=400, deadline=None)
@given(searches)
def test_any_text_parses_and_round_trips_through_the_url(text):
    filters = HistoryFilter(search=text)
    again = HistoryFilter.from_query_params(filters.to_query_params())
    assert again == filters
    assert HistoryFilter(search=filters.search) == HistoryFilter(search=filters.search, tags=())  # canonical is stable
    assert parse(filters.search).query == filters.query
    # The page reruns until the box holds the canonical search: it must be a fixed point.
    again = parse(filters.search)
    assert (str(again.query), again.fields, again.ignored) == (filters.search, {}, ())


def test_words_phrases_prefixes_exclusions_and_or():
    query = parse('vac* "full scan" OR analyze -refund -"money back"').query
    assert query.groups == ((Term("vac", prefix=True), Term("full scan")), (Term("analyze"),))
    assert query.excluded == (Term("refund"), Term("money back"))
    assert str(query) == 'vac* "full scan" OR analyze -refund -"money back"'


def test_field_filters_become_the_filters_fields():
    filters = HistoryFilter(search='tag:billing tag:"Needs  review" -refund vac* user:Bob flow:notes status:stopped '
                                   'fb:down version:"Notes RAG v7" after:2024-05-01 before:2024-06-01 latency>5s')
    assert filters == HistoryFilter(
        search="vac* -refund", tags=("billing", "needs review"), user="bob", engine="notes", status="stopped",
        feedback="down", version="Notes RAG v7", since=dt.date(2024, 5, 1), until=dt.date(2024, 5, 31),
        latency_over_ms=5000,
    )
    assert filters.to_query_params()["history_tags"] == ["billing", "needs review"]


def test_a_field_filter_in_the_box_is_the_same_as_the_widget():
    assert HistoryFilter(search="fb:up vacuum") == HistoryFilter(search="vacuum", feedback="up")
    assert HistoryFilter(search="tag:a", tags=("b",)) == HistoryFilter(tags=("a", "b"))


def test_bad_input_is_ignored_and_said():
    cases = {
        '"vacuum': ("vacuum", ["the stray quote"]),
        "vacuum OR": ("vacuum", ["a lone OR"]),
        "OR OR vacuum": ("vacuum", ["a lone OR"]),
        "?? vacuum": ("vacuum", ["“??”"]),
        "status:boom vacuum": ("vacuum", ["status:boom (status is error, stopped, interrupted)"]),
        "after:yesterday": ("", ["after:yesterday (dates are written 2024-05-01)"]),
        "v* vacuum": ("v vacuum", ["the * after “v” (at least 2 letters)"]),
        "latency>fast": ("", ["latency>fast (write latency>5s or latency>500ms)"]),
        "tag:": ("", ["tag: without a value"]),
    }
    for text, (search, ignored) in cases.items():
        filters = HistoryFilter(search=text)
        assert (filters.search, list(filters.ignored)) == (search, ignored), text
    assert searched(HistoryFilter(search='"vacuum')) == "Searched for vacuum; ignored the stray quote"
    assert searched(HistoryFilter(search="vacuum")) == "Searched for vacuum"


def test_contradicting_dates_keep_the_first_and_say_so():
    filters = HistoryFilter(search="after:2024-06-01 before:2024-05-01")
    assert (filters.since, filters.until) == (dt.date(2024, 6, 1), None)
    assert filters.ignored == ("before:2024-05-01 (it is before after:2024-06-01)",)


def test_a_link_from_before_the_status_filter_still_opens_failed_answers():
    assert HistoryFilter.from_query_params({"history_errors": "true"}) == HistoryFilter(status="error")


def test_tags_from_a_widget_are_read_as_they_are_stored():
    assert HistoryFilter(tags=["Billing", " needs   review ", ""]).tags == ("billing", "needs review")
