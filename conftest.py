"""Root pytest configuration: keep doctest collection away from entry points."""

collect_ignore = ["streamtopo/__main__.py"]
