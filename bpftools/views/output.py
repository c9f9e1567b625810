"""Where streamed output goes: noticing, without writing, that the reader of a pipe went away."""
from __future__ import annotations

import io
import select


class ReaderWatch:
    """`fstrace trace | head` must end when head does, even if no event comes to write.

    poll() reports POLLERR on the write end of a pipe whose readers are all
    gone; files and terminals never report it.
    """

    def __init__(self, out):
        self._poll = None
        try:
            fd = out.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return          # an in-memory stream: nobody to go away
        self._poll = select.poll()
        self._poll.register(fd, 0)      # POLLERR and POLLHUP are always reported

    def check(self) -> None:
        """Raise BrokenPipeError, as a write would, when the reader has gone away."""
        if self._poll is not None and self._poll.poll(0):
            raise BrokenPipeError
