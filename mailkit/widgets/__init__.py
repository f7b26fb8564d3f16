"""mailkit in JupyterLab: a mail client as one widget.

    from mailkit.widgets import MailClientApp
    MailClientApp()                  # log in, read, delete, write, watch the frames

* :mod:`mailkit.widgets.app` - :class:`MailClientApp`, the widget
* :mod:`mailkit.widgets.views` - what it shows, as plain functions (text, HTML)
* :mod:`mailkit.widgets.background` - the worker and poll threads behind it

Needs ipywidgets (``pip install 'mailkit[notebooks]'``).  The same notebook
served by Voila (``make app``) is a standalone web page; set
``MAILKIT_SERVER=host:port`` to point its form at a class server.
"""

from .app import APP_TIMEOUT_S, POLL_INTERVAL_S, MailClientApp, SideBySide, side_by_side
from .views import ENV_SERVER, about_this_page, default_address, describe_error, page_url, parse_address

__all__ = [
    "MailClientApp", "SideBySide", "side_by_side", "about_this_page", "APP_TIMEOUT_S", "POLL_INTERVAL_S",
    "ENV_SERVER", "default_address", "describe_error", "page_url", "parse_address",
]
