# file: pan_purepy/__init__.py
"""purepy: an example third-party runtime for pan that runs Python code objects with CPython."""
