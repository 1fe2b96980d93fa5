"""The renderer: a portrait and target landmarks -> frames of the caller (see :mod:`codec.render.pipeline`)."""
