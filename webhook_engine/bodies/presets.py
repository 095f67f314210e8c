"""Body templates that reproduce the envelopes of the seed vendors (BrainCert, Edusign, eduMe).

Each preset has a JSON and an XML form; the admin offers them on the webhook's page and the API
accepts their text like any other template.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "braincert": {
        "label": "BrainCert: {id, resource, action, created_at, timestamp, payload}",
        "json": (
            '{"id": {{ id|json }}, "resource": {{ resource|json }}, '
            '"action": {{ action|json }}, "created_at": {{ timestamp|json }}, '
            '"timestamp": {{ unix_timestamp }}, "payload": {{ data|json }}}'
        ),
        "xml": (
            "<webhook><id>{{ id|xml }}</id><resource>{{ resource|xml }}</resource>"
            "<action>{{ action|xml }}</action><created_at>{{ timestamp|xml }}</created_at>"
            "<timestamp>{{ unix_timestamp }}</timestamp>"
            "<payload>{{ data|xml_tree }}</payload></webhook>"
        ),
    },
    "edusign": {
        "label": "Edusign: flat {type, appId, ...fields}",
        "json": (
            '{"type": {{ type|vendor:"edusign"|json }}, "appId": null'
            '{% for key, value in data|entries %}{% if key != "type" and key != "appId" %}, '
            "{{ key|json }}: {{ value|json }}{% endif %}{% endfor %}}"
        ),
        "xml": (
            '<webhook><type>{{ type|vendor:"edusign"|xml }}</type><appId></appId>'
            "{{ data|xml_tree }}</webhook>"
        ),
    },
    "edume": {
        "label": "eduMe: {type, payload, timestamp}",
        "json": (
            '{"type": {{ type|vendor:"edume"|json }}, "payload": {{ data|json }}, '
            '"timestamp": {{ timestamp|json }}}'
        ),
        "xml": (
            '<webhook><type>{{ type|vendor:"edume"|xml }}</type>'
            "<payload>{{ data|xml_tree }}</payload><timestamp>{{ timestamp|xml }}</timestamp>"
            "</webhook>"
        ),
    },
}
