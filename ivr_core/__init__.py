"""ivr core: config, data, models, ops, training engine and evaluation."""

__version__ = "0.1.0"
