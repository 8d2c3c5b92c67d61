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
