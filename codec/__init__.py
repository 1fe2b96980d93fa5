"""talkcodec's codec: frame -> landmarks -> motion -> tokens -> packet, and back."""

from codec.errors import MediaError, NoFaceError, PortraitError, StreamError, TalkcodecError

__all__ = ["MediaError", "NoFaceError", "PortraitError", "StreamError", "TalkcodecError"]
