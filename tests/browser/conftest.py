"""The view tests share the Chromium fixtures of ``tests/conftest.py`` (``browser``, ``page``); helpers are in
browser_helpers.py."""
