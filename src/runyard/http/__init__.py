"""The HTTP face of runyard: :func:`create_app` builds it over a supervisor."""

from .app import create_app

__all__ = ["create_app"]
