"""Stand-alone measuring scripts (``python -m bench.measure.<name>``), apart from talk-bench itself."""
