"""ivr core: config, data, models, ops, training engine and evaluation.

The Python API (:mod:`ivr_core.api`) is re-exported here: ``ivr_core.load(path)`` gives a
:class:`~ivr_core.api.Model` whose ``predict(image, boxes)`` labels the boxes.
"""

__version__ = "0.1.0"

_API = ("load", "Model", "Prediction", "BoxPrediction")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    # imported on first use: `import ivr_core.config` stays free of torch and the models
    if name in _API:
        from ivr_core import api
        return getattr(api, name)
    raise AttributeError(f"module 'ivr_core' has no attribute {name!r}")
