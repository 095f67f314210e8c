"""Writes of the deliveries app: fan-out, attempts, and re-driving (sweeper, retrigger, recover)."""

from .attempts import deliveries_attempt, delivery_attempt
from .config import retry_policy, transport_get
from .fan_out import (
    DELIVER_TASK,
    deliveries_enqueue,
    event_fan_out,
    events_fan_out_pending,
    events_fan_out_waiting,
    fan_out_request,
    fan_out_request_take,
    subscriptions_receiving,
)
from .heartbeats import heartbeat_record, heartbeat_remove
from .pausing import ResumeResult, subscription_pause, subscription_resume
from .redrive import (
    RetriggerOutcome,
    RetriggerResult,
    SweepResult,
    deliveries_prune,
    deliveries_recover,
    deliveries_retrigger,
    deliveries_sweep,
    delivery_retrigger,
)
from .replay import (
    ReplayPlan,
    ReplayResult,
    ReplayTooLarge,
    deliveries_replay,
    events_replay_count,
    replay_plan,
)
from .send import headers_redact
from .testing import delivery_test_send, delivery_test_send_settings

__all__ = [
    "DELIVER_TASK",
    "ReplayPlan",
    "ReplayResult",
    "ReplayTooLarge",
    "ResumeResult",
    "RetriggerOutcome",
    "RetriggerResult",
    "SweepResult",
    "deliveries_attempt",
    "deliveries_enqueue",
    "deliveries_prune",
    "deliveries_recover",
    "deliveries_replay",
    "deliveries_retrigger",
    "deliveries_sweep",
    "delivery_attempt",
    "delivery_retrigger",
    "delivery_test_send",
    "delivery_test_send_settings",
    "event_fan_out",
    "events_fan_out_pending",
    "events_fan_out_waiting",
    "events_replay_count",
    "fan_out_request",
    "fan_out_request_take",
    "headers_redact",
    "heartbeat_record",
    "heartbeat_remove",
    "replay_plan",
    "retry_policy",
    "subscription_pause",
    "subscription_resume",
    "subscriptions_receiving",
    "transport_get",
]
