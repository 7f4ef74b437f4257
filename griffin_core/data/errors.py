"""The one exception type of the data package."""


class DataError(ValueError):
    """Data cannot be used as asked. The message is one line and names the file, path or setting."""
