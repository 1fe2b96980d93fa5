"""talkcodec realtime."""
