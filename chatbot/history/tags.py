"""Tags on conversations: free-text labels, the vocabulary an actor may see, and an admin's rename.

A tag exists while a conversation has it; there is no separate list of tags. Who sees a tag
follows who sees the conversation (``store.visible_to``): an analyst's suggestions are the tags
on their own conversations, so the labels on conversations they cannot read never reach them.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from chatbot import store
from chatbot.errors import InputError, NotFoundError
from chatbot.models import Conversation, ConversationTag
from chatbot.store import Actor

TAG_CHARS = 60
MAX_TAGS = 20  # on one conversation


def clean_tag(text: str) -> str:
    """A tag as stored: one line, lowercase, at most ``TAG_CHARS`` characters."""
    tag = store.one_line(text, what="tag", max_chars=TAG_CHARS).lower()
    if not tag:
        raise InputError("A tag must not be empty.")
    return tag


def _visible(actor: Actor):
    return (Conversation.deleted.is_(False), store.visible_to(actor))


def set_tags(session: Session, actor: Actor, conversation_id: int, tags: Iterable[str]) -> list[str]:
    """Make ``tags`` the conversation's tags (any the actor may read); the tags, sorted."""
    wanted = sorted({clean_tag(tag) for tag in tags})
    if len(wanted) > MAX_TAGS:
        raise InputError(f"A conversation holds at most {MAX_TAGS} tags.")
    found = session.scalar(select(Conversation.id).where(Conversation.id == conversation_id, *_visible(actor)))
    if found is None:
        raise NotFoundError("This conversation does not exist or was deleted.")
    had = set(session.scalars(select(ConversationTag.tag).where(ConversationTag.conversation_id == conversation_id)))
    gone = had - set(wanted)
    if gone:
        session.execute(delete(ConversationTag).where(
            ConversationTag.conversation_id == conversation_id, ConversationTag.tag.in_(gone)))
    session.add_all(ConversationTag(conversation_id=conversation_id, tag=tag) for tag in wanted if tag not in had)
    session.flush()
    return wanted


def tags_of(session: Session, actor: Actor, conversation_ids: Iterable[int]) -> dict[int, list[str]]:
    """Each of these conversations' tags, sorted (the ones the actor may read; others are absent)."""
    ids = list(conversation_ids)
    if not ids:
        return {}
    query = (
        select(ConversationTag.conversation_id, ConversationTag.tag)
        .join(Conversation, Conversation.id == ConversationTag.conversation_id)
        .where(ConversationTag.conversation_id.in_(ids), store.visible_to(actor))
        .order_by(ConversationTag.conversation_id, ConversationTag.tag)
    )
    tags: dict[int, list[str]] = {}
    for conversation_id, tag in session.execute(query):
        tags.setdefault(conversation_id, []).append(tag)
    return tags


def vocabulary(session: Session, actor: Actor) -> list[str]:
    """The tags on conversations the actor may read, sorted: the autocomplete's choices."""
    query = (
        select(ConversationTag.tag).distinct()
        .join(Conversation, Conversation.id == ConversationTag.conversation_id).where(*_visible(actor))
    )
    return sorted(session.scalars(query))


def rename_tag(session: Session, actor: Actor, old: str, new: str) -> int:
    """Rename a tag on every conversation (admins only); renaming onto an existing tag merges the two.
    Answers how many conversations carried ``old``."""
    if not actor.is_admin:
        raise NotFoundError("Only an admin can rename a tag for everyone.")
    old, new = clean_tag(old), clean_tag(new)
    carried = select(ConversationTag.conversation_id).where(ConversationTag.tag == old)
    count = len(session.scalars(carried).all())
    if count == 0:
        raise NotFoundError(f"No conversation has the tag {old!r}.")
    if old == new:
        return count
    has_new = select(ConversationTag.conversation_id).where(ConversationTag.tag == new)
    session.execute(
        update(ConversationTag)
        .where(ConversationTag.tag == old, ConversationTag.conversation_id.not_in(has_new.scalar_subquery()))
        .values(tag=new).execution_options(synchronize_session=False)
    )
    session.execute(delete(ConversationTag).where(ConversationTag.tag == old).execution_options(synchronize_session=False))
    store.audit(session, actor, "rename tag", f"{old} → {new} ({count} conversations)")
    return count
