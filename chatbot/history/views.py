"""Saved views: named history filters, private to their owner or shared with everyone.

A view stores the page's query parameters (``HistoryFilter.to_query_params``), so opening it is
opening a link; what it shows is still scoped to whoever opens it (``store.visible_to``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from chatbot import store
from chatbot.errors import InputError, NotFoundError
from chatbot.history.filters import HistoryFilter
from chatbot.models import SavedView, User
from chatbot.store import Actor

VIEW_NAME_CHARS = 120
VIEW_PARAM = "view"  # /history?view=<id> opens a view


@dataclass(frozen=True)
class View:
    id: int
    name: str
    owner: str
    shared: bool
    filters: HistoryFilter

    @property
    def label(self) -> str:
        return self.name if not self.shared else f"{self.name} (shared by {self.owner})"


def _view(row: SavedView, owner: str) -> View:
    return View(id=row.id, name=row.name, owner=owner, shared=row.shared,
                filters=HistoryFilter.from_query_params(row.filters or {}))


def save_view(session: Session, actor: Actor, name: str, filters: HistoryFilter, *, shared: bool = False) -> View:
    """Save (or overwrite) the actor's view of this name."""
    name = store.one_line(name, what="view name", max_chars=VIEW_NAME_CHARS)
    if not name:
        raise InputError("A view needs a name.")
    row = session.scalar(select(SavedView).where(SavedView.owner_id == actor.id, SavedView.name == name))
    if row is None:
        row = SavedView(owner_id=actor.id, name=name)
        session.add(row)
    row.filters, row.shared = filters.to_query_params(), shared
    session.flush()
    return _view(row, actor.username)


def _readable(actor: Actor):
    return or_(SavedView.owner_id == actor.id, SavedView.shared.is_(True))


def list_views(session: Session, actor: Actor) -> list[View]:
    """The actor's views, then the ones others shared, each by name."""
    query = (
        select(SavedView, User.username).join(User, User.id == SavedView.owner_id).where(_readable(actor))
        .order_by((SavedView.owner_id != actor.id), SavedView.name, SavedView.id)
    )
    return [_view(row, owner) for row, owner in session.execute(query)]


def get_view(session: Session, actor: Actor, view_id: int) -> View:
    found = session.execute(
        select(SavedView, User.username).join(User, User.id == SavedView.owner_id)
        .where(SavedView.id == view_id, _readable(actor))
    ).one_or_none()
    if found is None:
        raise NotFoundError("This saved view does not exist or is private.")
    return _view(*found)


def delete_view(session: Session, actor: Actor, view_id: int) -> None:
    row = session.scalar(select(SavedView).where(SavedView.id == view_id, SavedView.owner_id == actor.id))
    if row is None:
        raise NotFoundError("This saved view does not exist or is not yours.")
    session.delete(row)
