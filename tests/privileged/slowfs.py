"""A filesystem slowed on purpose: FUSE (Debian's python3-fusepy), in memory, whose reads and fsyncs wait.

    python3 slowfs.py MOUNTPOINT DELAY_S

Files are kept in memory; every read and every fsync waits DELAY_S before it
answers (direct_io: each read reaches this process, none is served from the
page cache); everything else answers at once.  Runs in the foreground until
MOUNTPOINT is unmounted.  (dm-delay would slow a block device instead; this
machine's kernel has no device mapper.)
"""
import errno
import stat
import sys
import time

import fusepy


class SlowFs(fusepy.Operations):
    def __init__(self, delay: float):
        self.delay = delay
        self.files: dict[str, bytearray] = {}
        self.now = time.time()

    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_ctime": self.now, "st_mtime": self.now,
                    "st_atime": self.now}
        if path not in self.files:
            raise fusepy.FuseOSError(errno.ENOENT)
        return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": len(self.files[path]),
                "st_ctime": self.now, "st_mtime": self.now, "st_atime": self.now}

    def readdir(self, path, fh):
        return [".", ".."] + [p[1:] for p in self.files]

    def create(self, path, mode, fi=None):
        self.files[path] = bytearray()
        return 0

    def open(self, path, flags):
        if path not in self.files:
            raise fusepy.FuseOSError(errno.ENOENT)
        return 0

    def truncate(self, path, length, fh=None):
        del self.files[path][length:]

    def read(self, path, size, offset, fh):
        time.sleep(self.delay)
        return bytes(self.files[path][offset:offset + size])

    def write(self, path, data, offset, fh):
        buf = self.files[path]
        buf[offset:offset + len(data)] = data
        return len(data)

    def fsync(self, path, datasync, fh):
        time.sleep(self.delay)
        return 0

    def unlink(self, path):
        del self.files[path]

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return 0


if __name__ == "__main__":
    fusepy.FUSE(SlowFs(float(sys.argv[2])), sys.argv[1], foreground=True, direct_io=True, nothreads=False)
