"""compilot: a local code-completion language server that learns from the compiler."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("compilot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
