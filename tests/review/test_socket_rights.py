"""A live socket lasts no longer than its right to be open: logout, deactivation and a role
taken away close it at the next push (or within the idle re-check), and every socket closes
after its lifetime so the page connects again, signing in afresh."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from labelling.access import roles
from labelling.live.broadcasts import DASHBOARD_GROUP, run_group
from shaping_web.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

PUSH = {"type": "html.push", "html": '<p id="probe">pushed</p>'}


@pytest.fixture(autouse=True)
def check_every_push(settings):
    settings.LIVE_SOCKET_RECHECK_S = 0


def _cookie(client, user) -> list[tuple[bytes, bytes]]:
    client.force_login(user)
    return [(b"origin", b"http://localhost"), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def _after(headers, change, *, path="/ws/live/", group=DASHBOARD_GROUP, push=True, timeout=5.0):
    """Connect, make `change`, push once to `group` (if `push`): what the socket then hears."""

    async def go():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        await database_sync_to_async(change)()
        if push:
            await get_channel_layer().group_send(group, PUSH)
        heard = await communicator.receive_output(timeout=timeout)
        await communicator.disconnect()
        return heard

    return async_to_sync(go)()


def test_a_socket_that_keeps_its_right_hears_the_push(client, reviewer):
    heard = _after(_cookie(client, reviewer), lambda: None)
    assert heard == {"type": "websocket.send", "text": PUSH["html"]}


def test_logging_out_closes_the_socket_at_the_next_push(client, reviewer):
    heard = _after(_cookie(client, reviewer), client.logout)
    assert heard == {"type": "websocket.close", "code": 4401}  # and the push was not sent


def test_a_deactivated_account_closes_the_socket(client, admin_user):
    heard = _after(
        _cookie(client, admin_user),
        lambda: get_user_model().objects.filter(pk=admin_user.pk).update(is_active=False),
        path="/ws/live/?run=7",
        group=run_group(7),
    )
    assert heard == {"type": "websocket.close", "code": 4401}


def test_an_admin_whose_role_is_taken_away_stops_hearing_a_runs_stream(client, admin_user):
    def demote():
        admin_user.groups.remove(roles.ensure_roles()[roles.ADMIN])

    heard = _after(_cookie(client, admin_user), demote, path="/ws/live/?run=7", group=run_group(7))
    assert heard == {"type": "websocket.close", "code": 4403}


def test_without_a_push_the_idle_check_closes_it(client, reviewer, settings):
    settings.LIVE_SOCKET_RECHECK_IDLE_S = 0.2
    heard = _after(_cookie(client, reviewer), client.logout, push=False)
    assert heard == {"type": "websocket.close", "code": 4401}


def test_a_socket_closes_after_its_lifetime_for_the_page_to_connect_again(client, reviewer, settings):
    settings.LIVE_SOCKET_MAX_AGE_S = 0.3
    heard = _after(_cookie(client, reviewer), lambda: None, push=False)
    assert heard == {"type": "websocket.close", "code": 1012}
