"""``Held``: the base of objects that hold running things (loaded extensions, their tasks, locks, engines), which a
copy or a pickle cannot carry, and whose repr names the data folder they work on."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["Held"]


class Held:
    """Refuses ``copy.copy``, ``copy.deepcopy`` and ``pickle`` with a ``TypeError`` naming the class and what it
    holds (``held``). A shallow copy shared the original's state, so stopping or closing the copy stopped the
    original under it; a deep copy duplicated running state nothing would ever stop; a pickle failed on some
    inner lock or closure ("Can't pickle local object '_weak_handler.<locals>.handler'"), naming nothing the
    user holds."""

    __slots__ = ()
    held: ClassVar[str] = "running state"

    def __reduce_ex__(self, protocol):
        raise TypeError(f"{type(self).__name__} cannot be copied or pickled: it holds {self.held} "
                        "(share the one object)")

    def __repr__(self) -> str:
        # (a service printed as <jan.services.chat.ChatService object at 0x...>, in Services' repr too)
        manager = getattr(self, "manager", None) or getattr(getattr(self, "models", None), "manager", None)
        folder = getattr(manager, "data_folder", None)
        if folder is None:
            return object.__repr__(self)
        return f"<{type(self).__name__} data_folder={str(folder)!r}>"
