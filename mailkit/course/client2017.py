"""``python -m mailkit.course.client2017 HOST PORT``: the 2017 client as a
program, its menu on stdin (see :func:`mailkit.course.legacy2017.main`).
A module of its own so that ``-m`` does not run legacy2017 a second time."""

from .legacy2017 import main

if __name__ == "__main__":
    raise SystemExit(main())
