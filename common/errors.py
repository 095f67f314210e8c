"""Turning a ValidationError into one line for a command's output."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def validation_message(exc: ValidationError) -> str:
    """``field: message; other: message`` (or the messages alone when they have no field)."""
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)
