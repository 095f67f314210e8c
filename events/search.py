"""Search of event payloads: which events' data mentions a word, a value or a phrase.

PostgreSQL's full-text search over the JSON itself: ``jsonb_to_tsvector('simple', data,
'["string", "numeric"]')`` turns every string and number value of an event's data (not its keys)
into lowercase tokens, unstemmed ('simple'), so ``c-42`` finds the course id ``c-42`` (and not
``c-420``), ``4711`` finds the number 4711, and ``"Mathematics 101"`` finds that phrase. The
GIN index ``event_data_search_idx`` (migration 0011) is over exactly this expression; a query
must use ``payload_vector()`` for PostgreSQL to use it. Other databases (the embedded SQLite of
``make run``) fall back to a substring match of the stored JSON text.
"""

from __future__ import annotations

from django.contrib.postgres.search import SearchQuery, SearchVectorField
from django.db.models import F, Func, Q, QuerySet, TextField
from django.db.models.functions import Cast

# The longest search text accepted: a search is for a value, not a document.
PAYLOAD_SEARCH_MAX_LENGTH = 200


class PayloadVector(Func):
    """The text and number values of an event's data as a ``tsvector`` (the index's expression)."""

    function = "jsonb_to_tsvector"
    template = (
        "%(function)s('simple'::regconfig, %(expressions)s, '[\"string\", \"numeric\"]'::jsonb)"
    )
    output_field = SearchVectorField()


def payload_vector() -> PayloadVector:
    """The indexed expression over ``Event.data``."""
    return PayloadVector(F("data"))


def events_payload_matching(queryset: QuerySet, *, term: str, vendor: str) -> QuerySet:
    """``queryset`` (events) narrowed to those whose data mentions ``term``.

    The term is read as a web search box reads it (``websearch_to_tsquery``): words must all
    appear, ``"..."`` is a phrase, ``or`` an alternative, ``-word`` excludes; case is ignored.
    A term with no searchable word (only punctuation) matches nothing.
    """
    term = term.strip()[:PAYLOAD_SEARCH_MAX_LENGTH]
    if vendor != "postgresql":
        return queryset.annotate(_payload_text=Cast("data", TextField())).filter(
            _payload_text__icontains=term
        )
    return queryset.annotate(_payload=payload_vector()).filter(
        Q(_payload=SearchQuery(term, config="simple", search_type="websearch"))
    )
