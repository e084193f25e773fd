"""treatment-history (`txh`): CLI and the ordered pipeline stages."""

__version__ = "0.1.0"
