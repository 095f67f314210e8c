"""The seed vendors: what Edusign, BrainCert, eduMe and edudip call our event types
(``names``), and the delivery profiles that speak exactly as each of them does (``profiles``,
one module per vendor with its declarative mapping, written in ``mapping``'s small language)."""

from .names import (
    BRAINCERT,
    EDUDIP,
    EDUME,
    EDUSIGN,
    SEED_EVENT_NAMES,
    VENDOR_TYPE_NAMES,
    SeedEventName,
    vendor_type_name,
)
from .profiles import (
    PRODUCT_HEADER_PREFIXES,
    PROFILES,
    STANDARD,
    HeaderRequest,
    Profile,
    ProfileEventMissing,
    SigningKeyMissing,
    profile_body,
    profile_get,
    profile_headers,
)

__all__ = [
    "BRAINCERT",
    "EDUDIP",
    "EDUME",
    "EDUSIGN",
    "PRODUCT_HEADER_PREFIXES",
    "PROFILES",
    "SEED_EVENT_NAMES",
    "STANDARD",
    "VENDOR_TYPE_NAMES",
    "HeaderRequest",
    "Profile",
    "ProfileEventMissing",
    "SeedEventName",
    "SigningKeyMissing",
    "profile_body",
    "profile_get",
    "profile_headers",
    "vendor_type_name",
]
