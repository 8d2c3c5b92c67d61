"""Test clients signed in as someone."""

from __future__ import annotations

from django.test import Client


def client_as(user) -> Client:
    """A client signed in as `user` (None: anonymous)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


async def socket_opened(communicator) -> tuple[bool, int | None]:
    """Connect a channels `WebsocketCommunicator` and say whether the socket stayed open, or the
    code it was closed with. A refused socket is opened and closed at once, saying why (as a
    browser sees it); one refused at the handshake (another origin) is (False, None)."""
    connected, code = await communicator.connect()
    if not connected:
        return False, code
    # A refusal is sent with the accept, in one go: it is waiting already, or nothing is.
    if not await communicator.receive_nothing(timeout=0.2):
        output = await communicator.receive_output()
        if output["type"] == "websocket.close":
            # As the server would answer the close: the consumer ends now, not at wait()'s timeout.
            await communicator.send_input({"type": "websocket.disconnect", "code": output.get("code")})
            return False, output.get("code")
        raise AssertionError(f"a socket's first message came before anything was published: {output}")
    return True, None
