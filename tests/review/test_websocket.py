"""The live socket: signed-in users only, and only from the site's own origin."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from shaping_web.asgi import application


def _connect(headers):
    async def go():
        communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    return async_to_sync(go)()


@pytest.mark.django_db(transaction=True)
def test_a_socket_from_another_origin_is_refused(client, reviewer):
    client.force_login(reviewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    connected, _ = _connect([(b"origin", b"http://evil.example"), (b"cookie", cookie)])
    assert not connected


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_socket_is_closed(db):
    connected, code = _connect([(b"origin", b"http://localhost")])
    assert not connected and code == 4401


@pytest.mark.django_db(transaction=True)
def test_a_signed_in_reviewer_on_the_sites_origin_connects(client, reviewer):
    client.force_login(reviewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    connected, _ = _connect([(b"origin", b"http://localhost"), (b"cookie", cookie)])
    assert connected
