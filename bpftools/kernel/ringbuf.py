"""BPF ring buffer consumers, reading the map's mmap directly.

BCC delivers each record through a ctypes callback, which costs more than
decoding the record does.  This reader walks the shared memory itself, as
the kernel documents it (Documentation/bpf/ringbuf.rst): a consumer page
the reader advances, a producer page with the producer position, then the
data area mapped twice in a row so a record that wraps reads as one piece.
Each record has an 8-byte header: length (with BUSY and DISCARD bits) and a
page offset; records are 8-byte aligned.

``consume(handle)`` gives each record to ``handle(memoryview)``, or, when
the handle has a ``drain(ring)`` method, hands it the whole ring: the
compiled stream path (bpftools/fastpath) walks it in C through
``ring.native``.  ``MemoryRing`` lays recorded records out the same way in
memory, so a replay (kernel/replay.py) goes through the same walk.
"""
from __future__ import annotations

import mmap
import select
import struct

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8
_u64 = struct.Struct("<Q")
_u32 = struct.Struct("<I")


class _Ring:
    """The walk over _consumer (position, writable), _producer (position) and _data, with mask."""

    mask: int
    _consumer: object
    _producer: object
    _data: memoryview
    _native = None

    def consume(self, handle) -> int | None:
        """Hand every record ready now to handle(memoryview); the number handled.

        Records the kernel writes meanwhile wait for the next call, so a
        producer as fast as the consumer cannot keep it here for ever.
        """
        drain = getattr(handle, "drain", None)
        if drain is not None:
            return drain(self)
        cons = _u64.unpack_from(self._consumer, 0)[0]
        prod = _u64.unpack_from(self._producer, 0)[0]
        data, mask, n = self._data, self.mask, 0
        unpack = _u32.unpack_from
        while cons < prod:
            off = cons & mask
            length = unpack(data, off)[0]
            if length & BUSY_BIT:
                break
            size = length & ~(BUSY_BIT | DISCARD_BIT)
            if not length & DISCARD_BIT:
                handle(data[off + HDR_SIZE: off + HDR_SIZE + size])
                n += 1
            cons += (size + HDR_SIZE + 7) & ~7
            if (n & 255) == 0:
                _u64.pack_into(self._consumer, 0, cons)     # give the space back as we go
        _u64.pack_into(self._consumer, 0, cons)
        return n

    @property
    def native(self):
        """The ring as fastpath.c walks it (made on first use)."""
        if self._native is None:
            from bpftools.fastpath import NativeRing
            self._native = NativeRing(self._consumer, self._producer, self._data, self.mask)
        return self._native

    def view(self, offset: int, size: int) -> memoryview:
        """size bytes of the data area at offset."""
        return self._data[offset:offset + size]

    def pending(self) -> int:
        """Bytes written that are not consumed yet."""
        return _u64.unpack_from(self._producer, 0)[0] - _u64.unpack_from(self._consumer, 0)[0]

    def _release(self) -> None:
        if self._native is not None:
            self._native.release()
            self._native = None


class RingBuffer(_Ring):
    """A BPF_MAP_TYPE_RINGBUF map, mapped into this process."""

    def __init__(self, map_fd: int, data_size: int):
        if data_size & (data_size - 1):
            raise ValueError("ring buffer size %d is not a power of two" % data_size)
        page = mmap.PAGESIZE
        self.mask = data_size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._producer)[page:]
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Sleep until the kernel signals data (a forced wakeup) or the timeout passes."""
        self._epoll.poll(timeout_ms / 1000 if timeout_ms >= 0 else -1)

    def close(self) -> None:
        self._release()
        self._epoll.close()
        self._data.release()
        self._producer.close()
        self._consumer.close()


class MemoryRing(_Ring):
    """Records laid out as the kernel lays them out in a ring, in memory (replays, tests)."""

    def __init__(self, records):
        body = bytearray()
        for rec in records:
            body += _u32.pack(len(rec)) + bytes(4) + rec
            body += bytes(-len(body) & 7)
        size = 8
        while size < len(body) + 8:
            size *= 2
        self.mask = size - 1
        self._consumer = bytearray(8)
        self._producer = bytearray(_u64.pack(len(body)))
        self._data = memoryview(bytes(body) + bytes(size - len(body)))

    def close(self) -> None:
        self._release()
