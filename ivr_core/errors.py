"""The one exception type for problems a user can fix.

Raise :class:`IvrError` for missing files, bad config keys, corrupt inputs and the like, with
a message that names the culprit and says what to do. The CLI prints it as one line and exits
non-zero; any other exception is a bug and keeps its traceback.
"""


class IvrError(Exception):
    """A user-caused error; its message is shown to the user as is."""
