"""Pictures for the course: sequence diagrams, marked hexdumps, the retry plot.

Every picture is an object that Jupyter shows as an image *and* that has a
plain-text form (its ``repr``), so it reads in a terminal, in a diff and
wherever images are not shown.  nbval compares the text form and the
SVG/HTML forms of committed notebooks, so all of them are deterministic.
One module per picture:

* :mod:`~mailkit.pictures.ladder` - :class:`Ladder`, the one renderer of
  message sequence charts, its SVG drawn by hand (a few lines and words):
  the same steps give the same bytes on every machine, with no plotting
  library at all;
* :mod:`~mailkit.pictures.sequence` - :func:`sequence_diagram` (a
  transcript as a two-actor ladder) and :func:`link_diagram` (what a noisy
  link did, a three-actor ladder);
* :mod:`~mailkit.pictures.hexdump` - :func:`hexdump_html`, the rows of
  :func:`mailkit.trace.hexdump_rows` with the flipped bytes coloured;
* :mod:`~mailkit.pictures.frame` - :func:`frame_html`, a frame's parts named;
* :mod:`~mailkit.pictures.plots` - :func:`retry_plot` uses matplotlib
  (imported when called, on its own ``Figure`` with the Agg canvas: no
  pyplot, no global state) and shows as PNG; nbval does not compare PNG
  bytes, so its text form carries the numbers of the plot, and those are
  compared;
* :mod:`~mailkit.pictures.matrix` - :func:`matrix_svg`, the class interop
  matrix of ``conform matrix`` (who interoperates with whom);
* :mod:`~mailkit.pictures.drawing` - what they share: :class:`Shown`, the
  colours, the opening of an SVG.
"""

from .drawing import COLOURS, Shown
from .frame import FrameView, frame_html
from .hexdump import HexdumpView, hexdump_html
from .ladder import Ladder, Layout, Step
from .matrix import matrix_svg
from .plots import RetryPlot, pieces_svg, retry_plot
from .sequence import SequenceDiagram, link_diagram, sequence_diagram

__all__ = ["SequenceDiagram", "sequence_diagram", "HexdumpView", "hexdump_html",
           "RetryPlot", "retry_plot", "Ladder", "Layout", "Step", "link_diagram", "FrameView",
           "frame_html", "pieces_svg", "COLOURS", "Shown", "matrix_svg"]
