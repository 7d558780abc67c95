"""Idéslussen matcher: command line, settings and the service functions shared with the API."""

__version__ = "0.1.0"
