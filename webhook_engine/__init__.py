"""The webhook engine: the pure rules of making and sending a webhook, below every app.

One module per concern, each taking plain values (no models, no ORM, no settings lookups):

- ``envelope``      the standard envelope of an event, dates in the school's zone, JSON and XML;
- ``bodies``        custom body templates (a sandboxed Django template engine) and the presets;
- ``vendors``       what the seed vendors call our event types, and the delivery profiles that
                    speak as each of them (body, dates, names, headers and signature);
- ``render``        the one render-and-check step: envelope + content type + template -> bytes;
- ``inputs``        what input every way in refuses (NUL, lone surrogates, deep JSON, dates no
                    school's zone can show);
- ``headers``       custom header names and values as RFC 9110 allows, credential-like names;
- ``redaction``     a webhook's secrets removed from what an attempt keeps;
- ``destinations``  which addresses webhooks may go to (SSRF policy);
- ``signing``       Standard Webhooks signatures (``v1`` HMAC, ``v1a`` Ed25519) and the vendors'
                    (Edusign's hex HMAC, edudip's ECDSA);
- ``transport``     the hardened HTTP client (deadline, body cap, checked destinations);
- ``retry``         the retry schedule and what is worth retrying;
- ``errors``        the kinds of failure an attempt can end with.

``subscriptions`` uses it to validate and preview, ``deliveries`` to send. It imports nothing
from the apps (``tests/test_architecture.py`` keeps it so).
"""
