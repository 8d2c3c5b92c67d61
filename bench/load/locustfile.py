"""The load scenario: reviewers working the review queue in the browser, over HTTP.

Each reviewer (a locust user, already signed in: a session from bench/load/harness.py) opens
the queue (GET /review/: claims and renders the group it holds or the next one, "next"),
spends a think time scoring it, and submits it as the page does (htmx: the form's fields as
templates/review/queue.html names them, a client-made submission_id, the CSRF header from
the page; the answer is the next group's panel, "submit"). Some submissions are sent twice,
as a double click or a retry after a lost answer does ("submit (again)"): the app must answer
"already stored" and store nothing twice. With LOAD_WATCH_RUN, one admin watches that run's
stream on the live websocket, as its run page does.

Settings from the environment (bench/load/harness.py sets them): LOAD_SESSIONS (the signed-in
sessions), LOAD_RESULTS (where the run's record goes when it stops: timings, statuses, every
acknowledged submission id), LOAD_THINK ("min,max" seconds), LOAD_RETRY_SHARE, LOAD_WATCH_RUN.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections import defaultdict

from locust import HttpUser, User, between, constant, events, task
from locust.exception import StopUser
from review_form import HTMX_HEADERS, csrf_token, review_form  # beside this file: locust puts its folder on the path

SESSIONS = json.loads(open(os.environ["LOAD_SESSIONS"]).read())  # noqa: SIM115, PTH123 - read once at import
THINK = tuple(float(x) for x in os.environ.get("LOAD_THINK", "5,15").split(","))
RETRY_SHARE = float(os.environ.get("LOAD_RETRY_SHARE", "0.05"))
WATCH_RUN = os.environ.get("LOAD_WATCH_RUN", "")
TIMEOUT_S = 60

_next_reviewer = itertools.count()
_record = {
    "timings": defaultdict(list),
    "statuses": defaultdict(lambda: defaultdict(int)),
    "acked": [],
    "acked_again": 0,
    "unanswered": 0,
    "frames": 0,
    "problems": [],
}


def _problem(text: str) -> None:
    if len(_record["problems"]) < 50:
        _record["problems"].append(text)


@events.request.add_listener
def _on_request(name, response_time, response, exception, **kwargs):
    status = str(response.status_code) if response is not None and response.status_code else "none"
    _record["timings"][name].append(round(response_time, 3))
    _record["statuses"][name][status] += 1
    if exception is not None and len(_record["problems"]) < 50:
        _problem(f"{name}: {type(exception).__name__}: {str(exception)[:200]}")


@events.quitting.add_listener
def _on_quit(environment, **kwargs):
    with open(os.environ["LOAD_RESULTS"], "w") as out:  # noqa: PTH123
        json.dump(_record, out)


class Reviewer(HttpUser):
    """A reviewer in the browser: open the queue, score the group (the think time), submit."""

    wait_time = constant(0)  # the think time is spent inside the task, between seeing a group and submitting it

    def on_start(self) -> None:
        if bundle := os.environ.get("LOAD_CA_BUNDLE"):  # an HTTPS proxy with a certificate of its own
            self.client.verify = bundle
        self.client.cookies.set("sessionid", SESSIONS["reviewers"][next(_next_reviewer) % len(SESSIONS["reviewers"])])
        self.csrf = ""
        self.panel = ""

    def _keep_cookies(self) -> None:
        # The app runs as in production (secure cookies) but is reached over plain HTTP on
        # loopback, as a TLS-terminating proxy would reach it: keep sending what it set.
        for cookie in self.client.cookies:
            cookie.secure = False

    @task
    def review_one_group(self) -> None:
        with self.client.get("/review/", name="next", timeout=TIMEOUT_S, catch_response=True) as answer:
            self._keep_cookies()
            if answer.status_code != 200:
                # Status 0: no answer at all; say why (a refused connection, a certificate).
                answer.failure(f"next answered {answer.status_code}" + (f": {answer.error}" if answer.error else ""))
                return
            self.csrf = csrf_token(answer.text) or self.csrf
            self.panel = answer.text
        form = review_form(self.panel)
        if form is None:  # nothing to review for this reviewer now: look again after a pause
            time.sleep(1)
            return
        assignment, fields = form
        time.sleep(random.uniform(*THINK))  # noqa: S311 - scoring the group
        self._submit(assignment, fields, name="submit")
        if random.random() < RETRY_SHARE:  # noqa: S311 - a double click, or a retry after a lost answer
            self._submit(assignment, fields, name="submit (again)")

    def _submit(self, assignment: int, fields: dict, *, name: str) -> None:
        # Referer as the browser sends it: over HTTPS (through a proxy) Django's CSRF check wants it.
        page = f"{self.host}/review/"
        headers = {**HTMX_HEADERS, "HX-Current-URL": page, "Referer": page, "X-CSRFToken": self.csrf}
        try:
            with self.client.post(
                f"/review/{assignment}/submit",
                data=fields,
                headers=headers,
                name=name,
                timeout=TIMEOUT_S,
                catch_response=True,
            ) as answer:
                self._keep_cookies()
                if answer.status_code != 200:
                    answer.failure(f"submit answered {answer.status_code}: {answer.text[:200]}")
                    if answer.status_code == 0:
                        _record["unanswered"] += 1
                    else:
                        _problem(f"{name} {answer.status_code}: {answer.text[:200]}")
                    return
                trigger = json.loads(answer.headers.get("HX-Trigger", "{}")).get("review-submitted")
                if not trigger:
                    answer.failure("submit answered without review-submitted")
                    return
                if trigger["stored"]:
                    _record["acked"].append(fields["submission_id"])
                else:
                    _record["acked_again"] += 1
                self.panel = answer.text
        except Exception as exc:  # noqa: BLE001 - a broken connection is recorded, not raised
            _record["unanswered"] += 1
            _problem(f"{name}: {type(exc).__name__}: {exc}")


if WATCH_RUN:
    import websocket  # websocket-client, which locust brings

    class RunWatcher(User):
        """An admin on the run's page: its live websocket receives the run's stream."""

        fixed_count = 1
        wait_time = between(1, 1)

        def on_start(self) -> None:
            host = self.host.removeprefix("http://")
            try:
                self.socket = websocket.create_connection(
                    f"ws://{host}/ws/live/?run={WATCH_RUN}",
                    origin=self.host,
                    cookie=f"sessionid={SESSIONS['admin']}",
                    timeout=5,
                )
            except (OSError, websocket.WebSocketException) as exc:
                _problem(f"run stream: {type(exc).__name__}: {exc}")
                raise StopUser from exc
            self.socket.settimeout(1)

        @task
        def receive(self) -> None:
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                try:
                    self.socket.recv()
                except websocket.WebSocketTimeoutException:
                    return
                except websocket.WebSocketException as exc:
                    _problem(f"run stream: {type(exc).__name__}: {exc}")
                    raise StopUser from exc
                _record["frames"] += 1

        def on_stop(self) -> None:
            if getattr(self, "socket", None) is not None:
                self.socket.close()
