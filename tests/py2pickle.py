"""Pickles as Python 2's cPickle wrote them with protocol 2, for fixtures of files that were made
with Python 2 (the CIFAR python-version batches).

Python 2 had one string type, `str`, a byte string; its pickles store it with the BINSTRING /
SHORT_BINSTRING opcodes, which Python 3 reads back as `str` decoded with the `encoding` given to
`pickle.load` (latin1 keeps every byte) or as `bytes` with `encoding="bytes"`. Python 3's own
protocol-2 pickles store `bytes` through a call of `_codecs.encode` instead, and numpy 2 names
its module `numpy._core`, where numpy 1 of those years said `numpy.core`. This pickler writes
both `bytes` and `str` as Python 2 strings, bools as the ints numpy 1 used in a dtype's
arguments, and numpy's globals under `numpy.core`, so the bytes match what Python 2 + numpy 1
wrote.
"""

from __future__ import annotations

import io
import pickle
import struct


class Py2Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_bool_as_int(self, obj: bool) -> None:
        self.save_long(int(obj))

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", None) or pickle.whichmodule(obj, name)
        name = name or obj.__qualname__
        module = module.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str
    dispatch[bool] = save_bool_as_int


def dumps_py2(obj: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()
