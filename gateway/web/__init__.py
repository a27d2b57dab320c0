"""The web client: server-rendered pages, their CSS and small ES modules.

The gateway serves it all (no second web server). Pages are Jinja templates with
autoescape on, so every user string (titles, descriptions, usernames) is HTML-escaped
on the way out; whatever the browser adds later (chat lines, API data) is written with
``textContent``. No inline script or style anywhere: the CSP forbids them
(``gateway/security.py``), so each page loads its module from ``/static/js/``.

Modules: ``routes`` (the router gateway/app.py mounts), ``templating`` (the Jinja
environment), ``pages`` (the HTML routes), ``mine`` (the caller's videos in every
state, for the studio), ``assets`` (``/static``, with the npm libraries the Makefile
copies into ``static/vendor/``).
"""

from __future__ import annotations

from gateway.web.routes import web_router

__all__ = ["web_router"]
