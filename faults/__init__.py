"""Fault injection against the whole running system: ``make faults`` (not part of ``make test``)."""
