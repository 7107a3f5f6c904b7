"""Whether an error came of another: libraries wrap the error that stopped them (a KeyboardInterrupt
inside NeMo's loader, a refused --storage-options value inside the manifest reader's error), and
what sde says depends on the one at the root."""

from __future__ import annotations


def caused_by(error: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """Whether ``error`` or any error in its chain of causes and contexts is a ``kind``."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, kind):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False
