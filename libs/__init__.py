"""crowdseg: crowdsourced annotation of scientific and medical images."""

__version__ = "0.1.0"
