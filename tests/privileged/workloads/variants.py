"""Two variants of one job, for report --from and report --diff.

usage: variants.py DIR VARIANT      (VARIANT: a or b)

Both variants make DIR/out, write DIR/out/grow (10 writes in a, 50 in b)
and create DIR/out/kept; a creates DIR/out/only-a, b creates DIR/out/only-b,
renames DIR/out/tmp to DIR/out/renamed and deletes DIR/out/kept.  Every
operation is one os.* call (one syscall), so the counts are exact; the
process leaves with os._exit (no interpreter shutdown, no stray activity).
"""
import os
import sys

base, variant = sys.argv[1], sys.argv[2]
out = os.path.join(base, "out")
os.mkdir(out)


def create(name: str, writes: int = 0) -> None:
    fd = os.open(os.path.join(out, name), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    for _ in range(writes):
        os.write(fd, b"x")
    os.close(fd)


create("grow", writes=10 if variant == "a" else 50)
create("kept")
create("only-" + variant, writes=1)
if variant == "b":
    create("tmp")
    os.rename(os.path.join(out, "tmp"), os.path.join(out, "renamed"))
    os.unlink(os.path.join(out, "kept"))
sys.stdout.flush()
os._exit(0)
