"""The ``ivr`` command line: one module per command, over ``ivr_core``."""
