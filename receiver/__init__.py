"""talk-recv: motion packets and speech in -> the portrait re-rendered at 25 fps -> window, MP4, statistics.

:mod:`receiver.cli` parses the command line, :mod:`receiver.listener` waits
for senders one at a time, :mod:`receiver.call` runs one call (jitter buffer
and playout), :mod:`receiver.playout` turns buffer decisions into landmarks,
:mod:`receiver.rendering` renders them, :mod:`receiver.sinks` writes them out,
and :mod:`receiver.viewers` streams them to browsers (``--serve-browser``).
"""
