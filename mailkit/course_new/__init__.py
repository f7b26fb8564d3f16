"""New course helpers (issue 13), kept apart from ``mailkit.course`` while
that module becomes a package; they move into it as topic modules:

* :mod:`.concurrency` - a one-connection-at-a-time server stalled by a
  silent client, fixed with threads and with :mod:`selectors` (notebook 01);
* :mod:`.streams` - a byte stream arriving in irregular pieces (notebook 03);
* :mod:`.exercises` - the "your turn" checks of notebooks 01-05.

Error detection (notebook 04) lives in :mod:`mailkit.detect` (stdlib only).
"""
