"""feed-worker: keeps a marketplace's copy of its suppliers' inventory feeds current."""

__version__ = "0.1.0"
