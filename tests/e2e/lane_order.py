"""Order within one lane after crashes, for the e2e ledgers.

Messages must first arrive in send order. A step back is a rewind: the
messages delivered but not yet marked so when a process died are sent again
from the spool. A rewind may only land on a message already delivered.
"""


def check(got, seq):
    """got: arrivals in order; seq: message -> its send position.
    Returns (rewinds, back): how many steps back, and the first arrivals
    that came out of order as (message, why) pairs."""
    back, rewinds, seen, top = [], 0, set(), -1
    for prev, m in zip([None] + got, got):
        if prev is not None and seq(m) <= seq(prev):
            rewinds += 1
        if seq(m) < top and m not in seen:
            back.append((m, "first arrival after %d" % top))
        seen.add(m)
        top = max(top, seq(m))
    return rewinds, back
