"""ASGI entry point: HTTP through Django, websockets through Channels.

Loading the settings refuses DEBUG with a non-loopback ALLOWED_HOSTS, and with DEBUG on a
connection that did not arrive on a loopback address is refused, whatever server runs this
(daphne on 0.0.0.0, say): DEBUG serves this machine only."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shaping_web.settings")
# Django must be set up before anything imports models.
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from shaping_web.handlers import SyncASGIHandler  # noqa: E402


def _patient_close() -> None:
    """Give a browser 5 s, not autobahn's 1 s, to answer the server's close of a live socket.
    Past the timeout autobahn (under daphne) resets the connection, and a reset discards what
    the browser had not read yet, the close frame included: a busy browser then sees 1006
    instead of the code the server sent (4401 after a logout, 4403, 1012), and htmx's ws
    extension answers 1006 by connecting again."""
    from autobahn.websocket.protocol import WebSocketServerFactory

    reset = WebSocketServerFactory.resetProtocolOptions
    if getattr(reset, "patient_close", False):
        return

    def reset_protocol_options(self) -> None:
        reset(self)
        self.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT_S

    reset_protocol_options.patient_close = True
    WebSocketServerFactory.resetProtocolOptions = reset_protocol_options


CLOSE_HANDSHAKE_TIMEOUT_S = 5
_patient_close()

# Pages and the API: the synchronous middleware chain in one hop, on threads that keep their
# database connections (shaping_web/handlers.py says why).
django_asgi_app = SyncASGIHandler(threads=settings.WEB_THREADS)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from labelling.live.routing import websocket_urlpatterns  # noqa: E402
from shaping_web.safety import LoopbackOnlyInDebug  # noqa: E402

application = LoopbackOnlyInDebug(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
