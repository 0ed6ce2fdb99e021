"""``google.colab.data_table`` in Skylab: the same functions as ``skylab.data_table``."""
from skylab.data_table import DataTable, disable_dataframe_formatter, enable_dataframe_formatter  # noqa: F401

__all__ = ["DataTable", "enable_dataframe_formatter", "disable_dataframe_formatter"]
