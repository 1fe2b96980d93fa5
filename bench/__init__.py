"""talkcodec bench."""
