"""Websocket consumers: push server-rendered partials that htmx's ws extension swaps in."""

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from labelling.live.broadcasts import DASHBOARD_GROUP, register_web_loop, review_group, run_group


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """One socket per open page. Joins the dashboard group, a run's group when the page
    asks (?run=ID), and a review group's (?group=ID) when the user holds that group.
    Only signed-in users may connect."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        # Workers running as threads of this process publish through this loop.
        register_web_loop(asyncio.get_running_loop())
        self.groups_joined = [DASHBOARD_GROUP]
        run_id = _query_param(self.scope, "run")
        if run_id and run_id.isdigit():
            self.groups_joined.append(run_group(int(run_id)))
        group_id = _query_param(self.scope, "group")
        if group_id and group_id.isdigit() and await _holds(user, int(group_id)):
            self.groups_joined.append(review_group(int(group_id)))
        for name in self.groups_joined:
            await self.channel_layer.group_add(name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for name in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(name, self.channel_name)

    async def html_push(self, event: dict) -> None:
        """A rendered fragment with hx-swap-oob targets; htmx swaps it in."""
        await self.send(text_data=event["html"])


@database_sync_to_async
def _holds(user, group_id: int) -> bool:
    from labelling.models import Assignment

    return Assignment.objects.filter(group_id=group_id, reviewer=user, status=Assignment.Status.ACTIVE).exists()


def _query_param(scope: dict, name: str) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode()).get(name)
    return values[0] if values else None
