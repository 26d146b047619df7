"""relay: a media relay for online meetings and large webinars."""

__version__ = "0.1.0"
