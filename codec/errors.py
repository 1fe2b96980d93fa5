"""The few exceptions talkcodec raises at its boundaries.

Each carries a message a user can act on; the command-line tools print it on
one line and exit non-zero instead of showing a traceback.
"""


class TalkcodecError(Exception):
    """Base class of every error talkcodec reports to a user."""


class NoFaceError(TalkcodecError):
    """No face was found in an image or frame."""


class PortraitError(TalkcodecError):
    """A portrait cannot be used: unreadable, no face, or several faces."""


class StreamError(TalkcodecError):
    """A stream header or packet is corrupt, truncated, oversized or of another version."""


class MediaError(TalkcodecError):
    """An input file is missing, unreadable, or not the kind of media expected."""


class UsageError(TalkcodecError):
    """What the user typed cannot work: an output that is also an input, a folder that does not exist, ..."""
