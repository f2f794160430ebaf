"""evtools: reproduce, audit and fix state lost by untyped event consumers."""
__version__ = "0.1.0"
