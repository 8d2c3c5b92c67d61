"""One helper to publish live events to websocket groups, used by services and tasks.

Events are server-rendered HTML fragments carrying `hx-swap-oob`, which htmx's ws
extension swaps into the page: the browser runs no rendering code of its own.

With the in-process channel layer (the embedded default), the huey workers run as
threads of the web process (`manage.py serve`), and a group_send must run on the web
server's event loop: the consumer registers that loop when a socket connects.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.template.loader import render_to_string
from django.utils.html import format_html

log = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"
SEND_TIMEOUT_S = 5

_web_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def register_web_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _web_loop
    with _loop_lock:
        _web_loop = loop


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def review_group(group_id: int) -> str:
    """Reviewers holding a group listen here (their review page joins it)."""
    return f"group-{group_id}"


def group_revised(group_id: int, revision: int, source: str) -> None:
    """Tell reviewers holding the group that one of its completions has a new revision."""
    who = "a reviewer's rewrite" if source == "human_rewrite" else "the revise pipeline"
    html = format_html(
        '<div id="group-notice" hx-swap-oob="true" class="alert notice" role="status">'
        "A completion in this group has a new revision ({}, revision {}). "
        '<a href="">Reload</a> to see it; your unsent scores are kept.</div>',
        who,
        revision,
    )
    push_html(review_group(group_id), html)


def push_html(group: str, html: str) -> None:
    _send(group, {"type": "html.push", "html": html})


def run_changed(run_id: int) -> None:
    """Progress and state of a run, to the dashboard and the run's own page."""
    from labelling.models import PipelineRun

    run = PipelineRun.objects.select_related("character", "prompt_set", "rubric").filter(pk=run_id).first()
    if run is None:
        return
    html = render_to_string("partials/run_row.html", {"run": run, "oob": True})
    push_html(DASHBOARD_GROUP, html)
    push_html(run_group(run_id), html)


def group_started(run_id: int, group, slots: list[int]) -> None:
    """A card for a group about to be generated, with an empty place per slot for its tokens."""
    html = render_to_string("partials/live_group.html", {"group": group, "slots": slots})
    push_html(run_group(run_id), html)


def tokens(run_id: int, group_id: int, pieces: dict[int, str]) -> None:
    """Streamed text for completions of a group while they are generated (escaped)."""
    html = "".join(
        format_html('<span id="stream-{}-{}" hx-swap-oob="beforeend">{}</span>', group_id, index, piece)
        for index, piece in sorted(pieces.items())
    )
    push_html(run_group(run_id), html)


def _send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        loop = _web_loop
        if isinstance(layer, InMemoryChannelLayer) and loop is not None and loop.is_running():
            if _on_loop(loop):
                loop.create_task(layer.group_send(group, message))
            else:
                asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(SEND_TIMEOUT_S)
        else:
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # a live update must never break the write that caused it
        log.exception("broadcast to %s failed", group)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
