"""The Django project: settings, URL map, ASGI routing, the JSON API object, and `serve`
(web + huey + Triton in one command). It may import both apps; they never import it."""
