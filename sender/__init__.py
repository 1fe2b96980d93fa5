"""talk-send: camera or video file -> face motion packets and Opus speech -> a talk-recv.

:mod:`sender.cli` parses the command line, :mod:`sender.sources` captures
(frames on the media clock, speech as Opus), :mod:`sender.browser` takes
a browser's camera and microphone instead (``--from-browser``), and
:mod:`sender.call` runs the call.
"""
