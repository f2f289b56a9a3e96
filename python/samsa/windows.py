"""Window specifications for ``GroupedStream.windowed_by``. Times are in seconds."""

from typing import Optional


class Tumbling:
    """Fixed windows of ``size`` seconds, back to back; a record after ``grace``
    seconds past its window's end is dropped."""

    advance: Optional[float] = None

    def __init__(self, size: float, grace: float = 0.0):
        self.size = float(size)
        self.grace = float(grace)

    def __repr__(self) -> str:
        return f"Tumbling(size={self.size}, grace={self.grace})"


class Hopping:
    """Windows of ``size`` seconds starting every ``advance`` seconds (overlapping when
    ``advance < size``)."""

    def __init__(self, size: float, advance: float, grace: float = 0.0):
        self.size = float(size)
        self.advance = float(advance)
        self.grace = float(grace)

    def __repr__(self) -> str:
        return f"Hopping(size={self.size}, advance={self.advance}, grace={self.grace})"


class Session:
    """Sessions of activity per key: records less than ``gap`` seconds apart share a
    session, and a record between two sessions merges them (``aggregate`` then needs
    ``merge``). A merged-away session is written as a tombstone (value ``None``)."""

    def __init__(self, gap: float, grace: float = 0.0):
        self.gap = float(gap)
        self.grace = float(grace)

    def __repr__(self) -> str:
        return f"Session(gap={self.gap}, grace={self.grace})"
