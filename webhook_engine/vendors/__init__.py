"""The seed vendors' vocabulary: what Edusign, BrainCert, eduMe and edudip call our event types."""

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

__all__ = [
    "BRAINCERT",
    "EDUDIP",
    "EDUME",
    "EDUSIGN",
    "SEED_EVENT_NAMES",
    "VENDOR_TYPE_NAMES",
    "SeedEventName",
    "vendor_type_name",
]
