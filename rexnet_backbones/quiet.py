"""Warnings of other libraries that a user of our tools cannot act on, hidden at the tools' start.

mmengine 0.10.7 imports ``pkg_resources`` (``mmengine.utils.is_installed``, on every config load),
and setuptools 80.9 to 81 warn about that with a ``UserWarning``, up to three times per start. Only
that message is filtered, and only by the tools (importing the package changes no warning filter);
``requirements/constraints.txt`` pins a setuptools that does not warn.
"""
import warnings

__all__ = ['quiet_known_warnings']


def quiet_known_warnings() -> None:
    """Filter mmengine's ``pkg_resources is deprecated`` warning (nothing else)."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API', category=UserWarning)
