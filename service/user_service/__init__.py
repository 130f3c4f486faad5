"""Users REST API."""

__version__ = "1.0.0"
