"""Qt-free GLASS anomaly detection engine: data, synthesis, model, training, evaluation and reports."""

__version__ = "0.1.0"
