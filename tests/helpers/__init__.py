"""Code the tests share: fixtures' data makers, reference figures, the DevTools client and the
scripts some tests run as processes of their own. Test modules import from here, never from each
other (``tests/`` is on ``sys.path`` through ``conftest.py``)."""
