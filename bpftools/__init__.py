"""fstrace: eBPF file-activity tracing by cgroup."""

__version__ = "0.1.0"
