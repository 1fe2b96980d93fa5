"""talk-send: camera or video file -> face motion packets and Opus speech -> a talk-recv.

:mod:`sender.cli` parses the command line, :mod:`sender.sources` captures
(frames on the media clock, speech as Opus), :mod:`sender.call` runs the call.
"""
