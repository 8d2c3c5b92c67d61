"""Websocket consumers: push server-rendered partials that htmx's ws extension swaps in."""

import asyncio
import re
import time
from collections import Counter
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model

from labelling.access import roles
from labelling.live.broadcasts import DASHBOARD_GROUP, register_web_loop, review_group, run_group

# Close codes (4000-4999 are the application's): the browser sees why, nothing is logged.
NOT_SIGNED_IN = 4401
NO_ROLE = 4403
MALFORMED = 4400
NO_SUCH_PATH = 4404
TOO_MANY = 4429  # the user already has LIVE_SOCKETS_PER_USER sockets open on this web process
# A socket that lived LIVE_SOCKET_MAX_AGE_S: closed as "service restart", which htmx's ws
# extension answers by connecting again, signing in afresh through the handshake.
LIFETIME_OVER = 1012
_MALFORMED = object()  # what _query_id answers for a parameter that is not one id

# An id is a positive integer in the database's range (a longer one would overflow the query).
_ID = re.compile(r"[1-9][0-9]{0,17}")

# Open sockets per user id, on this process (its consumers all run on one event loop).
_open_sockets: Counter[int] = Counter()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """One socket per open page, joining only what its user may see over HTTP:

    - the dashboard feed (every run's row): a socket that asks for neither a run nor a group
      (the dashboard's), of any user with a role (the dashboard shows runs only to them);
    - a run's stream and rows (?run=ID): admins, like the run's page; for anyone else the
      parameter joins nothing (the review page asks for it; the rest of its socket stands);
    - a review group's notices (?group=ID): the reviewer holding that group.

    A page hears only what it has a place for: the run page no other run's row, the review
    page no run row at all (htmx would report each as a swap without a target).

    A socket without a signed-in user closes with 4401, one whose user has no role with 4403,
    and one whose run or group id is not a positive integer with 4400; a user with
    LIVE_SOCKETS_PER_USER sockets already open on this web process is refused another (4429),
    so one account cannot hold a process's connections. The socket only pushes: a message
    from the client closes it with 4400."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await refuse(self, NOT_SIGNED_IN)
            return
        role = await database_sync_to_async(roles.user_role)(user)
        if role is None:
            await refuse(self, NO_ROLE)
            return
        run_id, group_id = _query_id(self.scope, "run"), _query_id(self.scope, "group")
        if run_id is _MALFORMED or group_id is _MALFORMED:
            await refuse(self, MALFORMED)
            return
        if _open_sockets[user.pk] >= settings.LIVE_SOCKETS_PER_USER:
            await refuse(self, TOO_MANY)
            return
        _open_sockets[user.pk] += 1  # counted with the check: no await between them
        self.counted = user.pk
        try:
            # Workers running as threads of this process publish through this loop.
            register_web_loop(asyncio.get_running_loop())
            self.groups_joined = [DASHBOARD_GROUP] if run_id is None and group_id is None else []
            if run_id is not None and role == roles.ADMIN:
                self.groups_joined.append(run_group(run_id))
            if group_id is not None and await _holds(user, group_id):
                self.groups_joined.append(review_group(group_id))
            for name in self.groups_joined:
                await self.channel_layer.group_add(name, self.channel_name)
            self.role, self.checked_at, self.closing = role, time.monotonic(), False
            await self.accept()
        except BaseException:
            self._uncount()
            raise
        self.watch = asyncio.create_task(self._watch(time.monotonic() + settings.LIVE_SOCKET_MAX_AGE_S))

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """Pages never send on this socket: anything sent is not ours to read."""
        await self.close(code=MALFORMED)

    def _uncount(self) -> None:
        if (counted := getattr(self, "counted", None)) is not None:
            self.counted = None
            _open_sockets[counted] -= 1
            if _open_sockets[counted] <= 0:
                del _open_sockets[counted]

    async def disconnect(self, code: int) -> None:
        self._uncount()
        if (watch := getattr(self, "watch", None)) is not None:
            watch.cancel()
        for name in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(name, self.channel_name)

    async def html_push(self, event: dict) -> None:
        """A rendered fragment with hx-swap-oob targets; htmx swaps it in, if the socket's
        right to it still holds (checked at most every LIVE_SOCKET_RECHECK_S)."""
        if self.closing:
            return
        if time.monotonic() - self.checked_at >= settings.LIVE_SOCKET_RECHECK_S and not await self._still_entitled():
            return
        await self.send(text_data=event["html"])

    async def _still_entitled(self) -> bool:
        """Whether the socket may stay open: its session still signed in (not logged out or
        flushed), its user still active and in the role it connected with. If not, it is
        closed: 4401 for a session that ended, 4403 for a right that was taken away (the page,
        reloaded, connects with what its user has now)."""
        self.checked_at = time.monotonic()
        code = await database_sync_to_async(_refusal)(self.scope, self.role)
        if code is not None:
            self.closing = True
            await self.close(code=code)
            return False
        return True

    async def _watch(self, closes_at: float) -> None:
        """Between pushes: the same check every LIVE_SOCKET_RECHECK_IDLE_S, and the lifetime."""
        while True:
            left = closes_at - time.monotonic()
            if left <= 0:
                self.closing = True
                await self.close(code=LIFETIME_OVER)
                return
            await asyncio.sleep(min(left, settings.LIVE_SOCKET_RECHECK_IDLE_S))
            if time.monotonic() < closes_at and not await self._still_entitled():
                return


class UnknownPathConsumer(AsyncJsonWebsocketConsumer):
    """Any other websocket path: closed with 4404, as an unknown page is a 404."""

    async def connect(self) -> None:
        await refuse(self, NO_SUCH_PATH)


async def refuse(consumer: AsyncJsonWebsocketConsumer, code: int) -> None:
    """Open the socket, then close it with `code`, sending nothing between. A socket refused
    at the handshake reaches the browser as 1006 with no reason, and htmx's ws extension
    answers 1006 by connecting again, for ever; a 4xxx close says why and is not retried."""
    await consumer.accept()
    await consumer.close(code=code)


def _refusal(scope: dict, role: str) -> int | None:
    """The close code for a socket whose right to be open has ended, None while it holds."""
    session, user = scope.get("session"), scope.get("user")
    key = getattr(session, "session_key", None)
    if key is None or not session.exists(key):
        return NOT_SIGNED_IN  # logged out (the session was flushed) or expired
    fresh = get_user_model().objects.filter(pk=user.pk, is_active=True).first()
    if fresh is None:
        return NOT_SIGNED_IN
    if roles.user_role(fresh) != role:
        return NO_ROLE  # a role taken away or changed: the page reconnects with the new one
    return None


@database_sync_to_async
def _holds(user, group_id: int) -> bool:
    from labelling.models import Assignment

    return Assignment.objects.filter(group_id=group_id, reviewer=user, status=Assignment.Status.ACTIVE).exists()


def _query_id(scope: dict, name: str) -> int | None | object:
    """The id a query parameter names: None when absent, _MALFORMED when it is not one id."""
    try:
        values = parse_qs(scope.get("query_string", b"").decode("ascii"), keep_blank_values=True).get(name)
    except UnicodeDecodeError:
        return _MALFORMED
    if values is None:
        return None
    if len(values) != 1 or not _ID.fullmatch(values[0]):
        return _MALFORMED
    return int(values[0])
