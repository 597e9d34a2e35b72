"""edged: the edge video daemon for pop-up event boxes."""

__version__ = "0.1.0"
