"""det-plugin-example: an example third-party detcore plugin."""

__version__ = "1.2.0"
