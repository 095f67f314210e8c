"""Building blocks for the catalog's JSON Schemas and the ``entry()`` record of one event type.

Conventions every event type follows (they are what receivers can rely on across types):

- ``data`` is an object with one member per resource involved, named after it (``course``,
  ``student``, ``user``), each an object with an ``id``; keys are ``snake_case``.
- Identifiers are strings or integers, as the platform has them (Edusign uses UUIDs, BrainCert
  and eduMe numbers). An identifier from another system is ``external_id``.
- Datetimes are ISO-8601 strings with a UTC offset; receivers get them in the school's zone.
- Schemas require what identifies the resource and allow any additional property, so a platform
  can send more than the catalog lists.
"""

from __future__ import annotations

from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]

ID: Schema = {"type": ["string", "integer"], "description": "The platform's identifier."}
EXTERNAL_ID: Schema = {"type": ["string", "integer", "null"], "description": "Another system's id."}
STRING: Schema = {"type": "string"}
TEXT: Schema = {"type": ["string", "null"]}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
DATETIME: Schema = {"type": "string", "format": "date-time"}
OPTIONAL_DATETIME: Schema = {"type": ["string", "null"], "format": "date-time"}
DATE: Schema = {"type": "string", "format": "date"}
URL: Schema = {"type": "string", "format": "uri"}
OPTIONAL_URL: Schema = {"type": ["string", "null"], "format": "uri"}
EMAIL: Schema = {"type": "string", "format": "email"}


def obj(*required: str, **properties: Schema) -> Schema:
    """An object schema that requires ``required`` and allows additional properties."""
    schema: Schema = {"type": "object"}
    if required:
        schema["required"] = list(required)
    schema["properties"] = properties
    return schema


def described(schema: Schema, doc: str) -> Schema:
    """``schema`` with a description (what the value is, for the reference)."""
    return {"description": doc, **schema}


def array(items: Schema, doc: str = "") -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if doc:
        schema["description"] = doc
    return schema


def enum(*values: str, doc: str = "") -> Schema:
    schema: Schema = {"type": "string", "enum": list(values)}
    if doc:
        schema["description"] = doc
    return schema


def ref(resource: str, /, **properties: Schema) -> Schema:
    """A resource object identified by ``id``, with optional extra properties."""
    return described(obj("id", id=ID, **properties), f"The {resource}.")


# The platform account an event happened in, as BrainCert sends it with each of its events
# (``domain_id``, ``tenant_id``). Optional: when absent, a BrainCert receiver gets the school's
# slug and id instead.
ACCOUNT_CONTEXT: dict[str, Schema] = {
    "domain_id": {
        "type": "string",
        "description": "The platform domain the event happened in (BrainCert's domain_id).",
    },
    "tenant_id": {
        "type": "string",
        "description": "The platform tenant the event happened in (BrainCert's tenant_id).",
    },
}

PERSON: dict[str, Schema] = {
    "first_name": STRING,
    "last_name": STRING,
    "email": EMAIL,
}

USER = ref("user", **PERSON)
INSTRUCTOR = ref("instructor", **PERSON, bio=TEXT)


def data_schema(*required: str, **properties: Schema) -> Schema:
    """The top-level schema of an event type's ``data``."""
    return {"$schema": SCHEMA_DIALECT, **obj(*required, **properties)}


def entry(
    key: str,
    *,
    group: str,
    description: str,
    sample: dict[str, Any],
    schema: Schema,
    version: int = 1,
    deprecated: bool = False,
) -> dict[str, Any]:
    """One event type as stored in the EventType table."""
    return {
        "key": key,
        "group": group,
        "description": description,
        "sample_payload": sample,
        "json_schema": schema,
        "version": version,
        "deprecated": deprecated,
    }
