"""The live socket follows the pages' rules, persona by persona: the dashboard feed for users with
a role, a run's stream and rows for admins, a review group's notices for its holder; a malformed
id, an unknown path or a message from the client closes the socket cleanly."""

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from labelling.live import broadcasts
from labelling.models import Group
from labelling.review import services as review_services
from labelling.runs import services as run_services
from shaping_web.asgi import application
from tests.clients import socket_opened

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def cookie_of(user) -> tuple[bytes, bytes] | None:
    if user is None:
        return None
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


END = '<div id="end-of-test"></div>'


def channels_of(path: str) -> list[str]:
    query = parse_qs(urlsplit(path).query)
    found = [broadcasts.DASHBOARD_GROUP]
    found += [broadcasts.run_group(int(v)) for v in query.get("run", []) if v.isdigit()]
    found += [broadcasts.review_group(int(v)) for v in query.get("group", []) if v.isdigit()]
    return found


def listen(user, path: str, *, publish=None, send: str | bytes | None = None) -> dict:
    """Connect as `user` (None: anonymous), run `publish` (in a thread, as a worker would), and
    report whether the socket connected, its close code, and every fragment it received before
    a last one sent to every channel the path could join (a socket that joined none hears
    nothing: then what it heard within two seconds)."""

    headers = [ORIGIN] + ([cookie] if (cookie := cookie_of(user)) else [])

    async def go():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await socket_opened(communicator)
        heard, closed = [], None
        if connected and send is not None:
            await (communicator.send_to(bytes_data=send) if isinstance(send, bytes) else communicator.send_to(send))
            closed = (await communicator.receive_output(timeout=5))["code"]
            await communicator.send_input({"type": "websocket.disconnect", "code": closed})  # as the server answers
        if connected and publish is not None:
            await database_sync_to_async(publish)()
            for channel in channels_of(path):
                await database_sync_to_async(broadcasts.push_html)(channel, END)
            # receive_nothing waits without ending the application (a timed-out receive would).
            while not await communicator.receive_nothing(timeout=2):
                if (html := await communicator.receive_from()) == END:
                    break
                heard.append(html)
        if connected and closed is None:
            await communicator.disconnect()
        await communicator.wait()  # the consumer's task ended without raising
        return {"connected": connected, "code": closed if connected else code, "heard": heard}

    return async_to_sync(go)()


@pytest.fixture
def run(world):
    return world["run"]


def run_row_published(run_id):
    return lambda: broadcasts.run_changed(run_id)


def tokens_published(run_id, group_id):
    return lambda: broadcasts.tokens(run_id, group_id, {0: "secret-token"})


# --- who may connect ------------------------------------------------------------------------


def test_an_anonymous_socket_is_closed_as_not_signed_in(db):
    assert listen(None, "/ws/live/") == {"connected": False, "code": 4401, "heard": []}


def test_a_user_in_no_role_is_closed_as_the_dashboard_keeps_them_out(outsider):
    assert listen(outsider, "/ws/live/") == {"connected": False, "code": 4403, "heard": []}


def test_a_user_in_no_role_sees_no_runs_on_the_dashboard_page(outsider, world):
    client = Client()
    client.force_login(outsider)
    page = client.get("/").content.decode()
    assert "no role yet" in page and f'id="run-{world["run"].pk}"' not in page and "ws-connect" not in page


# --- the dashboard feed (run rows): any role ----------------------------------------------


@pytest.mark.parametrize("persona", ["reviewer", "admin_user"])
def test_reviewers_and_admins_hear_the_dashboard_feed(request, persona, run):
    result = listen(request.getfixturevalue(persona), "/ws/live/", publish=run_row_published(run.pk))
    assert result["connected"] and len(result["heard"]) == 1 and f'id="run-{run.pk}"' in result["heard"][0]


# --- a run's own channel (its rows twice over, and its streamed tokens): admins ------------


def test_an_admin_hears_a_runs_stream(admin_user, run):
    group = Group.objects.filter(run=run).first()
    result = listen(admin_user, f"/ws/live/?run={run.pk}", publish=tokens_published(run.pk, group.pk))
    assert result["connected"] and any("secret-token" in html for html in result["heard"])


def test_a_reviewer_asking_for_a_run_hears_neither_its_stream_nor_its_second_row(reviewer, run):
    group = Group.objects.filter(run=run).first()

    def publish():
        tokens_published(run.pk, group.pk)()
        run_row_published(run.pk)()

    result = listen(reviewer, f"/ws/live/?run={run.pk}", publish=publish)
    # Connected (the review page's socket also carries its group's notices), but the run's
    # channel was not joined, and a socket that asks for a run hears no dashboard feed.
    assert result["connected"] and result["heard"] == []


def test_an_admins_run_page_hears_its_own_run_and_no_other(admin_user, run):
    other, _ = run_services.run_start(
        kind="generate", character=run.character, prompt_set=run.prompt_set, group_size=1, enqueue=False
    )

    def publish():
        run_row_published(other.pk)()  # another run's row: the dashboard's business
        run_row_published(run.pk)()

    result = listen(admin_user, f"/ws/live/?run={run.pk}", publish=publish)
    assert result["connected"] and len(result["heard"]) == 1 and f'id="run-{run.pk}"' in result["heard"][0]


# --- a review group's notices: its holder --------------------------------------------------


def test_a_group_is_heard_only_by_the_reviewer_holding_it(reviewer, admin_user, run):
    assignment = review_services.assignment_claim_next(reviewer=reviewer)

    def publish():
        broadcasts.group_revised(assignment.group_id, 1, "human_rewrite")

    path = f"/ws/live/?group={assignment.group_id}"
    holder = listen(reviewer, path, publish=publish)
    other = listen(admin_user, path, publish=publish)
    assert any('id="group-notice"' in html for html in holder["heard"])
    assert other["connected"] and not any('id="group-notice"' in html for html in other["heard"])


# --- malformed input closes cleanly ------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "run=abc",
        "run=-1",
        "run=0",
        "run=1.5",
        "run=%C2%B2",  # a superscript two: a digit to str.isdigit, not to int()
        "run=99999999999999999999999",  # past the database's integers
        "run=",
        "run=1&run=2",
        "group=x",
        "group=99999999999999999999999",
    ],
)
def test_a_malformed_id_closes_the_socket_cleanly(admin_user, query, caplog):
    with caplog.at_level(logging.WARNING):
        result = listen(admin_user, f"/ws/live/?{query}")
    assert result == {"connected": False, "code": 4400, "heard": []}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_an_unknown_socket_path_closes_cleanly(reviewer, caplog):
    with caplog.at_level(logging.WARNING):
        result = listen(reviewer, "/ws/live/12/extra")
    assert result == {"connected": False, "code": 4404, "heard": []}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("message", ['{"run": "abc"}', "not json", b"\x00\xff"])
def test_a_message_from_the_client_closes_the_socket_cleanly(reviewer, message, caplog):
    with caplog.at_level(logging.WARNING):
        result = listen(reviewer, "/ws/live/", send=message)
    assert result["connected"] and result["code"] == 4400
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_one_user_holds_at_most_the_set_number_of_sockets_on_a_process(reviewer, settings):
    settings.LIVE_SOCKETS_PER_USER = 2
    headers = [ORIGIN, cookie_of(reviewer)]

    async def go():
        first, second, third, fourth = (
            WebsocketCommunicator(application, "/ws/live/", headers=headers) for _ in range(4)
        )
        assert (await socket_opened(first))[0] and (await socket_opened(second))[0]
        assert await socket_opened(third) == (False, 4429)  # a third is refused, saying why
        await first.disconnect()
        await first.wait()
        assert (await socket_opened(fourth))[0]  # a closed one frees its place
        for communicator in (second, fourth):
            await communicator.disconnect()
            await communicator.wait()
        await third.wait()

    async_to_sync(go)()
    assert listen(reviewer, "/ws/live/")["connected"]  # and nothing is left counted


def test_the_server_gives_a_browser_time_to_answer_its_close():
    """autobahn resets a socket whose close the browser has not answered within its close
    timeout, and a reset discards the unread close frame: the app's ASGI module raises it from
    autobahn's 1 s, so that a busy browser still reads the code (shaping_web/asgi.py)."""
    from daphne.ws_protocol import WebSocketFactory

    import shaping_web.asgi

    assert WebSocketFactory(None).closeHandshakeTimeout == shaping_web.asgi.CLOSE_HANDSHAKE_TIMEOUT_S == 5
