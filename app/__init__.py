"""LoRKD Studio desktop app (installed as ``lorkd_studio``). Talks to lorkd_core only through app/services."""

__version__ = "0.1.0"
