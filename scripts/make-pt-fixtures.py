#!/usr/bin/env python3
"""Writes the PyTorch checkpoints acap's .pt reader is tested against, without torch.

An independent writer: CPython's own pickler (protocol 2, as torch.save uses) and zipfile
(stored entries), with stand-ins registered as `torch._utils._rebuild_tensor_v2`,
`torch.FloatStorage` & co. so the pickle names exactly the globals torch writes, and
persistent ids `('storage', StorageClass, key, 'cpu', numel)` for the storages, as
torch.serialization does. Deterministic: run it again and the files are byte-identical.

    python3 scripts/make-pt-fixtures.py tests/fixtures/pt
"""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
torch._utils = utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = utils


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called: only pickled")


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2

STORAGES = {}
for name, (fmt, size) in {
    "FloatStorage": ("f", 4),
    "DoubleStorage": ("d", 8),
    "HalfStorage": ("e", 2),
    "BFloat16Storage": (None, 2),
}.items():
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)
    STORAGES[name] = (cls, fmt, size)


class Storage:
    def __init__(self, kind, key, values, big):
        self.cls, fmt, size = STORAGES[kind]
        self.key, self.numel = key, len(values)
        order = ">" if big else "<"
        if fmt is None:  # bfloat16: the top half of the f32 bits (values chosen exact).
            self.bytes = b"".join(
                struct.pack(order + "H", struct.unpack("<I", struct.pack("<f", v))[0] >> 16)
                for v in values
            )
        else:
            self.bytes = struct.pack(order + fmt * len(values), *values)


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def save(path, obj, storages=(), big=False, name=None):
    name = name or path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        def add(entry, data):
            info = zipfile.ZipInfo(f"{name}/{entry}", date_time=(2026, 1, 1, 0, 0, 0))
            z.writestr(info, data)
        add("data.pkl", buf.getvalue())
        add("byteorder", "big" if big else "little")
        for s in storages:
            add(f"data/{s.key}", s.bytes)
        add("version", "3\n")


def matrix(rows, cols):
    """The axis the tests expect: value (r, c) = r - c / 8 (exact in every float type)."""
    return [[r - c / 8 for c in range(cols)] for r in range(rows)]


def main(out):
    rows, cols = 4, 8
    m = matrix(rows, cols)
    flat = [x for row in m for x in row]
    for kind in ["FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage"]:
        s = Storage(kind, "0", flat, big=False)
        save(f"{out}/axis_{kind}.pt", Tensor(s, 0, (rows, cols), (cols, 1)), [s])
    s = Storage("FloatStorage", "0", flat, big=True)
    save(f"{out}/axis_big_endian.pt", Tensor(s, 0, (rows, cols), (cols, 1)), [s], big=True)
    # A transposed view: the storage holds m column by column, strides (1, rows).
    cols_first = [m[r][c] for c in range(cols) for r in range(rows)]
    s = Storage("FloatStorage", "0", cols_first, big=False)
    save(f"{out}/axis_strided.pt", Tensor(s, 0, (rows, cols), (1, rows)), [s])
    # A view into a larger storage: 5 padding values first, 3 after.
    s = Storage("FloatStorage", "7", [99.0] * 5 + flat + [98.0] * 3, big=False)
    save(f"{out}/axis_offset.pt", Tensor(s, 5, (rows, cols), (cols, 1)), [s])
    # What torch.save({'axis': t}) writes.
    s = Storage("FloatStorage", "0", flat, big=False)
    save(f"{out}/axis_dict.pt", {"axis": Tensor(s, 0, (rows, cols), (cols, 1))}, [s])
    save(f"{out}/thresholds.pt", {1: -2.5, 3: -1.0, 2: -4})
    # A storage shorter than the tensor needs.
    s = Storage("FloatStorage", "0", flat[:-3], big=False)
    s.numel = len(flat)
    save(f"{out}/axis_truncated.pt", Tensor(s, 0, (rows, cols), (cols, 1)), [s])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/pt")
