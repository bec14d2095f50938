"""Hand freed heap memory back to the OS once a worker is idle after large request bodies.

Why: glibc's malloc raises its mmap threshold each time it frees a large block, so from the
second large request body on, bodies are carved from the main heap; when they are freed the
heap's top stays resident unless it grows past twice that threshold. A worker that served a
few 1 MiB uploads would keep about 1 MiB of free memory resident for the rest of its life,
and that memory also counts against ``--max-worker-memory``. While requests keep coming the
memory is reused: giving it back and faulting it in again would cost more CPU than the
request itself (measured: twice the CPU of a 1 MiB upload). So a worker only notes that it
received a large body, and calls ``malloc_trim(0)`` once it has been idle for a poll period
(at most a second).

Only where the C library has ``malloc_trim`` (glibc); elsewhere ``release()`` does nothing.
The function is reached through ``_ctypes`` directly, loaded by the first worker that needs
it: the ``ctypes`` package would cost twice the memory.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LARGE_BODY", "release"]

# A body this large (bytes) may leave that much free memory resident after it is freed; below
# it, what could be given back is less than the ~0.4 MiB that loading _ctypes costs.
LARGE_BODY = 512 * 1024

_trim: Callable[[int], int] | None = None
_looked_up = False


def _lookup() -> Callable[[int], int] | None:
    try:
        import _ctypes
    except ImportError:  # pragma: no cover - Python built without ctypes
        return None

    class _Int(_ctypes._SimpleCData):  # type: ignore[type-arg]
        _type_ = "i"

    class _TrimFunction(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL
        _restype_ = _Int
        _argtypes_ = (_Int,)

    try:
        address = _ctypes.dlsym(_ctypes.dlopen(None), "malloc_trim")  # type: ignore[arg-type]
    except (OSError, AttributeError):  # not glibc (musl, macOS...)
        return None
    return _TrimFunction(address)


def release() -> bool:
    """Return the heap's free memory to the OS; False where the C library cannot."""
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        _trim = _lookup()
    if _trim is None:
        return False
    _trim(0)
    return True
