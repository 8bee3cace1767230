"""The ``hsets`` command line: ``hsets demo``, ``hsets explain``, ``hsets evaluate``, ``hsets explore``."""
