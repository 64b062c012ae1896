"""The kernel limits a worker puts on itself once its runtime is up and its code is linked.

In this order: death with the node (``PR_SET_PDEATHSIG``: SIGKILL when the node's thread that
started it ends), no core files, ``RLIMIT_AS`` at what the runtime has mapped plus the node's
``worker_memory``, ``RLIMIT_NPROC`` 0 and ``RLIMIT_NOFILE`` at the descriptors it holds for
runtimes that start no threads, no new privileges (``PR_SET_NO_NEW_PRIVS``), and a seccomp
filter built with libseccomp (through pyseccomp, a ctypes binding with the API of
libseccomp's own: the filter is the point, and libseccomp resolves system-call numbers and
architectures and writes correct BPF, which a hand-built filter would have to re-derive).

The filter's default answer is ``EPERM``: a system call not listed fails and only that call's
caller sees it (an engine probing for a feature goes on; hostile code gets an error). Allowed,
for every runtime: reading and writing descriptors it already holds (it can open none, so these
are its channel and /dev/null), memory mapping, futexes, clocks and sleeps, its own signals
(``kill``/``tgkill`` aimed at its own pid only, so ``abort()`` works), ``getrandom``, process
information, and exiting. Threads (``clone`` with ``CLONE_THREAD`` only) for ``jvm`` and ``wasm``,
whose engines start helper threads on demand; ``clone3`` answers ``ENOSYS`` so their C library
falls back to ``clone``, whose flags the filter can see. Never allowed, for any runtime: a new
process (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``), ``execve``, any socket, opening
files (but for ``jvm``, below), ``ptrace``, ``prctl`` (the limits cannot be undone), mounting, namespaces.

Runtimes outside the ``THREADED`` set get the same filter without ``clone``. ``jvm`` also may
open files for reading (``openat`` without write or create flags) and look at them: its JVM
loads classes from its jars on first use; the Java code itself reaches no file API (its
class checker allows none).

Per runtime, then: ``native`` and ``restricted_py`` the base set; ``wasm`` the base set and
threads; ``jvm`` the base set, threads and reading files.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal

__all__ = ["BASE_SYSCALLS", "THREADED", "die_with_node", "limit_resources", "install_filter", "allowed_syscalls"]

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_THREAD = 0x00010000

#: system calls every worker may make (see the module docstring)
BASE_SYSCALLS = (
    "read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close", "fstat", "newfstatat",
    "fcntl",
    "mmap", "munmap", "mremap", "mprotect", "brk", "madvise", "mincore", "msync",
    "futex", "set_robust_list", "get_robust_list", "rseq", "sched_yield", "sched_getaffinity",
    "clock_gettime", "clock_getres", "gettimeofday", "nanosleep", "clock_nanosleep", "time",
    "poll", "ppoll",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "rt_sigtimedwait",
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getrandom",
    "getrusage", "sysinfo", "uname", "restart_syscall",
    "exit", "exit_group",
)
#: runtimes whose engines start threads after the filter is in place
THREADED = frozenset({"jvm", "wasm"})
#: extra calls of the threaded runtimes (``clone`` is added with its flag check)
_THREAD_SYSCALLS = ("membarrier", "sched_getparam", "sched_getscheduler", "sched_setaffinity", "prlimit64")
#: runtimes whose engines read files after the filter is in place (the JVM loads classes
#: from its jars lazily): opening for reading only, and looking at files
READS_FILES = frozenset({"jvm"})
_READ_SYSCALLS = ("readlink", "readlinkat", "getdents64", "statx", "stat", "lstat", "access", "faccessat", "faccessat2", "getcwd")
#: ``open``/``openat`` flags that write or create: the filter lets a call with none of them through
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _libc() -> ctypes.CDLL:
    # the process's own symbols (libc is linked into the interpreter): no ``find_library``,
    # which runs a helper program and would fail under the limits
    return ctypes.CDLL(None, use_errno=True)


def die_with_node(node_pid: int) -> None:
    """SIGKILL this worker when the node ends; end now if it already has."""
    if _libc().prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != node_pid:
        os._exit(1)


def _mapped_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        pages = int(f.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def limit_resources(runtime: str, memory: int) -> int:
    """Set the worker's rlimits; returns the address-space limit set."""
    import pyseccomp  # noqa: F401  (it finds and loads libseccomp now, which the limits would stop)

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    limit = _mapped_bytes() + memory
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if runtime not in THREADED:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
        top = max(fds) + 1 if fds else 3
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, top))
    return limit


def allowed_syscalls(runtime: str) -> list[str]:
    """What the filter lets ``runtime``'s worker call (``clone`` means threads only)."""
    out = list(BASE_SYSCALLS)
    if runtime in THREADED:
        out += [*_THREAD_SYSCALLS, "clone"]
    if runtime in READS_FILES:
        out += [*_READ_SYSCALLS, "open (read-only)", "openat (read-only)"]
    return out


def install_filter(runtime: str) -> None:
    """No new privileges, then the seccomp filter for ``runtime`` (see the module docstring)."""
    import pyseccomp as sc

    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    pid = os.getpid()
    f = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    threaded = runtime in THREADED
    for name in BASE_SYSCALLS + (_THREAD_SYSCALLS if threaded else ()):
        try:
            f.add_rule(sc.ALLOW, name)
        except (OSError, ValueError):  # not a call on this architecture
            continue
    # its own signals only: abort() and raise() work, nothing else can be signalled
    f.add_rule(sc.ALLOW, "kill", sc.Arg(0, sc.EQ, pid))
    f.add_rule(sc.ALLOW, "tgkill", sc.Arg(0, sc.EQ, pid))
    f.add_rule(sc.ALLOW, "tkill", sc.Arg(0, sc.EQ, pid))
    if threaded:
        f.add_rule(sc.ALLOW, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, _CLONE_THREAD))
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if runtime in READS_FILES:
        for name in _READ_SYSCALLS:
            try:
                f.add_rule(sc.ALLOW, name)
            except (OSError, ValueError):
                continue
        f.add_rule(sc.ALLOW, "openat", sc.Arg(2, sc.MASKED_EQ, _WRITE_FLAGS, 0))
        f.add_rule(sc.ALLOW, "open", sc.Arg(1, sc.MASKED_EQ, _WRITE_FLAGS, 0))
    f.load()
