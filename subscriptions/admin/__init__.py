"""The webhooks admin, by stage: registration, the settings page and the actions
(``webhooks``), the list (``changelist``), the pages of one webhook (``pages``)."""

from .webhooks import SubscriptionAdmin

__all__ = ["SubscriptionAdmin"]
