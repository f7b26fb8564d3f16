"""Small helpers for the course notebooks, so that their cells stay short.

One module per topic; every name a notebook imports is here too
(``from mailkit.course import quiz``):

* :mod:`~mailkit.course.kernel` - stop what the kernel started, press Ctrl-C
  (notebook 01);
* :mod:`~mailkit.course.streams` - one request, one reply; a big frame read
  in pieces (notebooks 01, 03);
* :mod:`~mailkit.course.diagrams` - the fixed ladders (notebooks 01, 02, 05);
* :mod:`~mailkit.course.sessions` - guessable session ids, a fake clock
  (notebook 02);
* :mod:`~mailkit.course.legacy2017` - 2017 habits put back to watch them fail
  (notebook 03);
* :mod:`~mailkit.course.checksums` - a weak checksum, delivery odds with
  retries (notebook 04);
* :mod:`~mailkit.course.rdt` - sequence numbers on top of the protocol
  (notebook 05);
* :mod:`~mailkit.course.quizzes` - the self-check questions;
* :mod:`~mailkit.course.concurrency` - a one-connection-at-a-time server
  stalled by a silent client, fixed with threads and with :mod:`selectors`
  (notebook 01);
* :mod:`~mailkit.course.sockets` - TIME_WAIT and SO_REUSEADDR, SO_REUSEPORT
  (notebook 01);
* :mod:`~mailkit.course.pieces` - a byte stream arriving in irregular pieces
  (notebook 03);
* :mod:`~mailkit.course.exercises` - the checks of the "your turn" cells
  (notebooks 01-05, 07);
* :mod:`~mailkit.course.timers` - silent loss, timers, RTT samples, rdt3.0's
  ladder, pipelining measured for real (notebook 07; the pure parts are
  :mod:`mailkit.rtt` and :mod:`mailkit.pipelining`).

Error detection side by side (notebook 04) lives in :mod:`mailkit.detect`
(standard library only).

Nothing here changes the protocol.  Some helpers put a 2017 habit back on
purpose, to show what went wrong (:class:`Server2017Style`,
:func:`parse_2017`, :class:`SessionIds2017`); :class:`SeqServer` and
:class:`SeqClient` demonstrate sequence numbers (rdt2.1) on top of the
unchanged protocol.  Each is labelled as what it is.
"""

from .checksums import analytic_delivery, crc32_blind_flips, simple_sum, simulate_delivery, sum_blind_flips
from .concurrency import OneAtATimeServer, SelectorServer, StallResult, stall_test, thread_per_connection
from .diagrams import handshake_diagram, rdt21_diagram, tcp_connection_diagram, threads_diagram
from .exercises import (
    Verdict, check_blind_flips, check_dispatch, check_internet_checksum, check_new_session_id,
    check_parse_login_reply, check_read_frame, check_receiver, check_recv_all, check_sender,
    check_rto_update, check_split_frame, check_utilisation,
)
from .kernel import press_ctrl_c_after, stop_everything
from .legacy2017 import Server2017Style, parse_2017
from .pieces import LiveArrival, Steps, live_arrival, stream_steps
from .quizzes import QUIZZES, Question, Quiz, quiz
from .rdt import SEQ_TAG, SeqClient, SeqServer, Tally, send_all, tally
from .sessions import FakeClock, SessionIds2017, clone_random
from .sockets import reuseport_demo, time_wait_demo
from .streams import Arrival, arrival, raw_request

__all__ = [
    "stop_everything", "press_ctrl_c_after", "raw_request", "parse_2017", "Server2017Style", "FakeClock",
    "SessionIds2017", "clone_random", "Arrival", "arrival", "simple_sum", "sum_blind_flips", "crc32_blind_flips",
    "simulate_delivery", "analytic_delivery", "SeqServer", "SeqClient", "send_all", "tally",
    "Quiz", "quiz", "QUIZZES", "tcp_connection_diagram", "threads_diagram",
    "handshake_diagram", "rdt21_diagram",
    "OneAtATimeServer", "SelectorServer", "StallResult", "stall_test", "thread_per_connection",
    "time_wait_demo", "reuseport_demo", "Steps", "stream_steps", "LiveArrival", "live_arrival",
    "Verdict", "check_recv_all", "check_dispatch", "check_parse_login_reply", "check_new_session_id",
    "check_split_frame", "check_read_frame", "check_internet_checksum", "check_blind_flips",
    "check_receiver", "check_sender", "check_rto_update", "check_utilisation",
]
