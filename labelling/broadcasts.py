"""One helper to publish live events to websocket groups, used by services and tasks."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def push_html(group: str, html: str) -> None:
    _send(group, {"type": "html.push", "html": html})


def push_json(group: str, payload: dict) -> None:
    _send(group, {"type": "json.event", "payload": payload})


def _send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a live update must never break the write that caused it
        log.exception("broadcast to %s failed", group)
