"""lifelong: lifelong and mixture generative models, their data, training, metrics and runs."""

__version__ = "0.1.0"
