"""pan: an active network node that runs mobile code from several runtimes side by side."""

from pan_runtime.errors import PanError
from pan_runtime.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["PanError", "hookimpl", "__version__"]
