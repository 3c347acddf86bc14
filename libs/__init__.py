"""crowdseg: crowdsourced annotation of scientific and medical images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crowdseg")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
