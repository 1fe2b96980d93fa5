"""talkcodec receiver."""
