"""talkcodec sender."""
