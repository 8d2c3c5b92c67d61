"""The Django project: settings, URL map, ASGI routing."""
