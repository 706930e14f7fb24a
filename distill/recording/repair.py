"""Clear the HDF5 superblock's file-consistency flags after a crash (what the ``h5clear -s`` tool does).

A file written in SWMR mode marks its superblock "open for writing"; a ``kill -9`` leaves the
mark, and HDF5 then refuses to open the file for writing again. The data itself is consistent
(that is SWMR's guarantee), so clearing the flags and fixing the superblock checksum is enough.
Only superblock versions 2 and 3 (``libver="latest"``, as recordings are written) are handled.
"""

from __future__ import annotations

from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum HDF5 puts on its metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    i = 0
    while length - i > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK  # noqa: E702
        a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK  # noqa: E702
        i += 12
    tail = data[i:]
    if not tail:
        return c
    tail = tail + b"\x00" * (12 - len(tail))
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    c ^= b; c = (c - _rot(b, 14)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _MASK  # noqa: E702
    return c


def _superblock(raw: bytes) -> tuple[int, int]:
    """(version, size in bytes without checksum) of a v2/v3 superblock at offset 0."""
    if raw[:8] != SIGNATURE:
        raise ValueError("not an HDF5 file with its superblock at offset 0")
    version, size_of_offsets = raw[8], raw[9]
    if version not in (2, 3):
        raise ValueError(f"superblock version {version} is not supported (only 2 and 3)")
    return version, 12 + 4 * size_of_offsets


def superblock_checksum_ok(path: str | Path) -> bool:
    with open(path, "rb") as handle:
        raw = handle.read(64)
    _, size = _superblock(raw)
    return lookup3(raw[:size]) == int.from_bytes(raw[size:size + 4], "little")


def stored_end_of_file(path: str | Path) -> int | None:
    """The end-of-file address a v2/v3 superblock records (None for other files): a file shorter than it was cut.

    A SWMR writer killed before closing leaves it *below* the real size, never above, so ``size < stored`` means
    the file lost its tail (a copy or download that stopped early)."""
    with open(path, "rb") as handle:
        raw = handle.read(64)
    try:
        _superblock(raw)
    except ValueError:
        return None
    offsets = raw[9]
    eof_at = 12 + 2 * offsets
    return int.from_bytes(raw[eof_at:eof_at + offsets], "little")


def clear_consistency_flags(path: str | Path) -> bool:
    """Clear the 'open for write' flags and raise a stale end-of-file address to the file's size.

    A SWMR writer updates the superblock's end-of-file address only when it closes, so after a
    crash it points below data that is really there (``h5clear -s --increment`` does the same).
    Returns whether anything had to be changed.
    """
    file_size = Path(path).stat().st_size
    with open(path, "r+b") as handle:
        raw = handle.read(64)
        _, size = _superblock(raw)
        offsets = raw[9]
        eof_at = 12 + 2 * offsets
        eof = int.from_bytes(raw[eof_at:eof_at + offsets], "little")
        if raw[11] == 0 and eof >= file_size:
            return False
        fixed = bytearray(raw[:size])
        fixed[11] = 0
        fixed[eof_at:eof_at + offsets] = max(eof, file_size).to_bytes(offsets, "little")
        handle.seek(0)
        handle.write(bytes(fixed) + lookup3(bytes(fixed)).to_bytes(4, "little"))
    return True
