"""The ordersaga command line, settings, telemetry and the dev stack supervisor."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ordersaga")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
