"""The live socket: signed-in users only, and only from the site's own origin."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from shaping_web.asgi import application
from tests.clients import socket_opened


def _connect(headers):
    async def go():
        communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
        connected, code = await socket_opened(communicator)
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


@pytest.mark.django_db(transaction=True)
def test_a_reviewer_holding_a_group_hears_when_it_is_revised(client, reviewer, demo):
    from channels.db import database_sync_to_async

    from labelling.models import Generation
    from labelling.records import services as record_services
    from labelling.review import services as review_services

    assignment = review_services.assignment_claim_next(reviewer=reviewer)
    original = Generation.objects.filter(group=assignment.group, revision=0).first()
    client.force_login(reviewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    def revise():
        record_services.generation_record(
            group=original.group,
            index=original.index,
            messages=original.messages,
            raw_text="<b>better</b> answer",
            producer=None,
            parent=original,
        )

    async def go():
        communicator = WebsocketCommunicator(
            application,
            f"/ws/live/?group={assignment.group_id}",
            headers=[(b"origin", b"http://localhost"), (b"cookie", cookie)],
        )
        connected, _ = await communicator.connect()
        assert connected
        await database_sync_to_async(revise)()
        html = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return html

    html = async_to_sync(go)()
    assert 'id="group-notice"' in html and "revision 1" in html and "revise pipeline" in html
    assert "<b>better</b>" not in html  # the notice carries no model text


@pytest.mark.django_db(transaction=True)
def test_a_socket_cannot_listen_to_a_group_it_does_not_hold(client, reviewer, demo):
    from channels.db import database_sync_to_async

    from labelling.models import Generation, Group
    from labelling.records import services as record_services

    group = Group.objects.order_by("id").first()
    original = Generation.objects.filter(group=group, revision=0).first()
    client.force_login(reviewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    def revise():
        record_services.generation_record(
            group=group,
            index=original.index,
            messages=original.messages,
            raw_text="again",
            producer=None,
            parent=original,
        )

    async def go():
        communicator = WebsocketCommunicator(
            application, f"/ws/live/?group={group.pk}", headers=[(b"origin", b"http://localhost"), (b"cookie", cookie)]
        )
        assert (await communicator.connect())[0]
        await database_sync_to_async(revise)()
        nothing = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return nothing

    assert async_to_sync(go)()
