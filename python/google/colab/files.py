"""``google.colab.files`` in Skylab: the same functions as ``skylab.files``."""
from skylab.files import download, upload  # noqa: F401

__all__ = ["download", "upload"]
