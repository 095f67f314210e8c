"""Custom webhook bodies: a sandboxed template engine (``sandbox``), the only tags and filters it
offers (``library``), and the seed vendors' envelopes as ready-made templates (``presets``)."""

from .library import MAX_LOOP_ITERATIONS, MAX_OUTPUT_CHARACTERS
from .presets import PRESETS
from .sandbox import (
    CONTEXT_NAMES,
    MAX_TEMPLATE_CHARACTERS,
    BodyTemplateError,
    CompiledBody,
    body_compile,
    body_context,
    body_output_check,
    body_render,
)

__all__ = [
    "CONTEXT_NAMES",
    "MAX_LOOP_ITERATIONS",
    "MAX_OUTPUT_CHARACTERS",
    "MAX_TEMPLATE_CHARACTERS",
    "PRESETS",
    "BodyTemplateError",
    "CompiledBody",
    "body_compile",
    "body_context",
    "body_output_check",
    "body_render",
]
