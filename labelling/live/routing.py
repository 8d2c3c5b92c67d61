"""Websocket URL routes (Channels)."""

from django.urls import path

from labelling.live import consumers

websocket_urlpatterns = [
    path("ws/live/", consumers.LiveConsumer.as_asgi()),
]
