"""An example third-party runtime for pan, installed as its own package."""
