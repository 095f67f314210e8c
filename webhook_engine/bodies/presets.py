"""Body templates in the shape of the seed vendors' envelopes (BrainCert, Edusign, eduMe), as a
starting point for a custom body.

They reproduce the envelope only, with our data inside. For a receiver written for a vendor,
choose the vendor's delivery profile instead (``vendors``): it sends the vendor's exact body,
field names, dates, headers and signature. Each preset has a JSON and an XML form; the admin
offers them on the webhook's page and the API accepts their text like any other template.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "braincert": {
        "label": "BrainCert-like envelope: {id, resource, action, created_at, timestamp, payload}",
        "json": (
            '{"id": {{ id|json }}, "resource": {{ resource|json }}, '
            '"action": {{ action|json }}, "created_at": {{ timestamp|json }}, '
            '"timestamp": {{ unix_timestamp }}, "payload": {{ data|json }}}'
        ),
        "xml": (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            "<webhook><id>{{ id|xml }}</id><resource>{{ resource|xml }}</resource>"
            "<action>{{ action|xml }}</action><created_at>{{ timestamp|xml }}</created_at>"
            "<timestamp>{{ unix_timestamp }}</timestamp>"
            "<payload>{{ data|xml_tree }}</payload></webhook>"
        ),
    },
    "edusign": {
        "label": "Edusign-like envelope: flat {type, appId, ...fields}",
        "json": (
            '{"type": {{ type|vendor:"edusign"|json }}, "appId": null'
            '{% for key, value in data|entries %}{% if key != "type" and key != "appId" %}, '
            "{{ key|json }}: {{ value|json }}{% endif %}{% endfor %}}"
        ),
        "xml": (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<webhook><type>{{ type|vendor:"edusign"|xml }}</type><appId></appId>'
            "{{ data|xml_tree }}</webhook>"
        ),
    },
    "edume": {
        "label": "eduMe-like envelope: {type, payload, timestamp}",
        "json": (
            '{"type": {{ type|vendor:"edume"|json }}, "payload": {{ data|json }}, '
            '"timestamp": {{ timestamp|json }}}'
        ),
        "xml": (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<webhook><type>{{ type|vendor:"edume"|xml }}</type>'
            "<payload>{{ data|xml_tree }}</payload><timestamp>{{ timestamp|xml }}</timestamp>"
            "</webhook>"
        ),
    },
}
