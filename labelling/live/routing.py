"""Websocket URL routes (Channels)."""

from django.urls import path, re_path

from labelling.live import consumers

websocket_urlpatterns = [
    path("ws/live/", consumers.LiveConsumer.as_asgi()),
    # Last: any other path closes cleanly instead of failing in the router.
    re_path(r"", consumers.UnknownPathConsumer.as_asgi()),
]
