"""The sandbox a submission's kernel runs in, when grading.

A submission is hostile code.  Its kernel runs under bubblewrap (``bwrap``,
Debian package ``bubblewrap``, conda-forge ``bubblewrap``) as root drops it:

* a **mount namespace** that holds only what a kernel needs, read-only:
  ``/usr`` (and the ``/lib``, ``/bin`` links), this Python's installation,
  its virtual environment and the ``mailkit`` package.  The lab sources,
  the submissions, the gradebook, the grader's own files and ``/proc`` of
  the host are not there at all; folders the grader names as private
  (the sources, the submissions, the output) are covered with an empty
  tmpfs if they happen to lie inside a mounted folder;
* writes only to its own ``/home/student`` and ``/tmp``: small tmpfs
  (``--disk``, 64 MB each by default) that vanish with the run;
* a **PID namespace**: it sees only its own processes, and when the run
  ends (or the grader dies: ``--die-with-parent``) the kernel of Linux kills
  every process in it, including those that left the session, changed
  their name or cleared their environment;
* a **throwaway uid** (random, 200000-265000, no groups, no capabilities,
  ``no_new_privs``), so it can neither read root's files nor signal the
  grader;
* **memory per submission**: where the machine has a memory cgroup the
  grader may make children of (v2 with the memory controller, or v1), the
  run's processes all go into one of their own, capped at ``--memory``
  (1024 MB) with no swap: the kernel of Linux kills inside it when the run
  as a whole goes past.  Elsewhere only the rlimits below bound it, to
  ``--memory`` × ``--processes`` (see :func:`rlimit_bound`);
* **rlimits**: address space of each process (``--memory``), processes and
  threads of that uid (``--processes``, 256), CPU seconds (``--cpu``, 120),
  file size and open files;
* the **network namespace** of the run's harness: only a loopback of its
  own, shared with the grader's reference servers and clients for that run
  and with nothing else (no other student's kernel, no host service).

:func:`available` says whether this machine can do all that (it needs
Linux, root, and bwrap on the PATH).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import resource
import shutil
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "available", "bwrap_command", "enter_network_namespace", "private_scratch", "preexec", "UID_RANGE",
           "MemoryCgroup", "rlimit_bound", "memory_bound", "remove_stale_cgroups", "memory_cgroup_parents"]

UID_RANGE = (200_000, 265_000)   # throwaway uids: no account, no files on the host
HOME = "/home/student"
RUN_DIR = "/run/mailkit"         # the kernel's connection file, read-only


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024        # address space of each process (RLIMIT_AS)
    processes: int = 256         # processes + threads of the run's uid (RLIMIT_NPROC)
    cpu_s: int = 120             # CPU seconds of each process (RLIMIT_CPU)
    disk_mb: int = 64            # size of /home/student and of /tmp (tmpfs), and of one file
    open_files: int = 256

    def as_dict(self) -> dict:
        return dict(memory_mb=self.memory_mb, processes=self.processes, cpu_s=self.cpu_s,
                    disk_mb=self.disk_mb, open_files=self.open_files)


def available() -> str:
    """``""`` if submissions can be sandboxed here, else why not."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the sandbox needs root (to switch to a throwaway uid and make namespaces); run grade as root"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap, or conda install -c conda-forge bubblewrap)"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    return ""


def _parents(path: Path) -> list[str]:
    return [str(p) for p in reversed(path.parents) if str(p) != "/"]


def readable_roots() -> list[Path]:
    """What the kernel may read: the Python installation, the virtual
    environment, and where the mailkit package lives (an editable install
    points outside site-packages)."""
    import mailkit
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(mailkit.__file__).resolve().parent}
    exe = Path(sys.executable)
    roots.add(exe.parent.resolve() if exe.parent.resolve() != Path("/usr/bin") else Path("/usr"))
    out = []
    for root in sorted(roots, key=lambda p: len(p.parts)):
        if any(root == r or r in root.parents for r in out) or str(root).startswith("/usr"):
            continue
        out.append(root)
    return out


def bwrap_command(command: list[str], *, uid: int, run_dir: Path, limits: Limits,
                  hide: list[Path] = (), home: Path | None = None) -> list[str]:
    """*command* wrapped in bwrap and setpriv as described above.  *run_dir*
    (host folder, read-only inside as :data:`RUN_DIR`) holds the connection
    file; *hide* are host folders to cover if they lie under a mounted one.
    *home* (a host folder the run owns, a size-capped tmpfs of its own: see
    :func:`private_scratch`) is bound writable as :data:`HOME` instead of a
    fresh tmpfs, so that what a server writes outlives one start of it."""
    size = str(limits.disk_mb * 1024 * 1024)
    args = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--tmpfs", "/", "--ro-bind", "/usr", "/usr",
            # The writable tmpfs come first, so that a read-only folder the
            # kernel needs that lies under one of them (a clone in /tmp, its
            # .venv) is bound on top of it, not hidden by it.
            "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
            "--perms", "0755", "--dir", "/home",
            *(["--bind", str(home), HOME] if home else ["--perms", "1777", "--size", size, "--tmpfs", HOME]),
            "--perms", "0755", "--dir", "/run"]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        target = Path("/") / name
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            args += ["--ro-bind", str(target), str(target)]
    made: set[str] = {"/", "/tmp", "/home", HOME, "/run"}    # there already, with their own modes
    for root in readable_roots():
        for parent in _parents(root):
            if parent not in made:
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += ["--ro-bind", str(root), str(root)]
    for name in ("hosts", "nsswitch.conf", "passwd", "group", "localtime"):
        etc = Path("/etc") / name
        if etc.exists():
            args += ["--ro-bind", str(etc), str(etc)]
    mounted = readable_roots()
    for private in hide:
        private = Path(private).resolve()
        if any(m == private or m in private.parents for m in mounted):
            args += ["--tmpfs", str(private)]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--ro-bind", str(run_dir), RUN_DIR,
             "--chdir", HOME, "--clearenv",
             "--setenv", "HOME", HOME, "--setenv", "USER", "student", "--setenv", "LANG", "C.UTF-8",
             "--setenv", "PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin",
             "--setenv", "IPYTHONDIR", f"{HOME}/.ipython", "--setenv", "JUPYTER_RUNTIME_DIR", f"{HOME}/.jupyter",
             "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "MPLBACKEND", "Agg",
             # glibc reserves 64 MB of address space per thread arena: with --memory as
             # an address-space limit, a server with 20 threads would run out of it.
             "--setenv", "MALLOC_ARENA_MAX", "2",
             "--", shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
             "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *command]
    return args


def rlimit_bound(limits: Limits) -> str:
    """What bounds a run's memory without a cgroup: each process's address
    space times the processes the run may have."""
    total = limits.memory_mb * limits.processes
    return (f"rlimits only: {limits.memory_mb} MB per process x {limits.processes} processes "
            f"= {total / 1024:g} GB per submission")


class MemoryCgroup:
    """One run's memory cgroup: every process the run starts joins it (the
    kernel's preexec writes its pid before bwrap starts), so the cap is for
    the whole submission, forks and threads included."""

    def __init__(self, path: Path, version: int, limit_mb: int):
        self.path, self.version, self.limit_mb = path, version, limit_mb

    @classmethod
    def create(cls, limit_mb: int) -> "MemoryCgroup | None":
        """A new cgroup below this process's own, capped at *limit_mb*, or
        None where there is none we may make (no cgroup, read-only, no
        memory controller for children)."""
        for version, parent in memory_cgroup_parents():
            path = parent / f"mailkit-run-{os.getpid()}-{os.urandom(4).hex()}"
            try:
                path.mkdir()
            except OSError:
                continue
            group = cls(path, version, limit_mb)
            try:
                limit = str(limit_mb * 1024 * 1024)
                if version == 2:
                    (path / "memory.max").write_text(limit)
                    for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                        with contextlib.suppress(OSError):
                            (path / name).write_text(value)
                else:
                    (path / "memory.limit_in_bytes").write_text(limit)
                    with contextlib.suppress(OSError):          # swap accounting may be off
                        (path / "memory.memsw.limit_in_bytes").write_text(limit)
                return group
            except OSError:
                group.remove()
        return None

    def as_list(self) -> list:
        return [str(self.path), self.version, self.limit_mb]

    @classmethod
    def from_list(cls, value) -> "MemoryCgroup | None":
        return cls(Path(value[0]), int(value[1]), int(value[2])) if value else None

    def describe(self) -> str:
        return f"cgroup v{self.version}: {self.limit_mb} MB per submission"

    def join(self) -> None:
        """Move the calling process into this cgroup (a preexec_fn step)."""
        with open(self.path / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def remove(self, wait_s: float = 5.0) -> None:
        """Remove the cgroup once its processes are gone (their PID
        namespace's end kills them; the last may take a moment)."""
        import time
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)


def memory_cgroup_parents() -> list[tuple[int, Path]]:
    """This process's own memory cgroup folders where children can be made:
    v2 (its cgroup lets children use the memory controller), then v1."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        mine = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in mounts:
        fields = line.split()
        if " - " not in line:
            continue
        root, point = fields[3], fields[4]
        fstype, _, options = line.split(" - ", 1)[1].split()[:3]
        for entry in mine:
            number, controllers, path = (entry.split(":", 2) + ["", ""])[:3]
            if fstype == "cgroup2" and number == "0" and controllers == "":
                folder = Path(point) / os.path.relpath(path, root)
                try:
                    if "memory" in (folder / "cgroup.subtree_control").read_text().split():
                        found.insert(0, (2, folder))
                except OSError:
                    pass
            elif fstype == "cgroup" and "memory" in options.split(",") and "memory" in controllers.split(","):
                folder = Path(point) / os.path.relpath(path, root)
                if (folder / "memory.limit_in_bytes").exists():
                    found.append((1, folder))
    return found


def remove_stale_cgroups() -> int:
    """Remove the empty run cgroups of graders that are gone (a grader
    killed with SIGKILL cannot remove its own); return how many."""
    removed = 0
    for _, parent in memory_cgroup_parents():
        try:
            children = list(parent.glob("mailkit-run-*"))
        except OSError:
            continue
        for child in children:
            try:
                pid = int(child.name.split("-")[2])
                os.kill(pid, 0)
                continue                    # its grader is still running
            except (ValueError, IndexError, PermissionError):
                continue
            except ProcessLookupError:
                pass
            try:
                child.rmdir()               # refused if a process is still in it
                removed += 1
            except OSError:
                pass
    return removed


def memory_bound(limits: Limits) -> str:
    """How a sandboxed run's memory is bounded on this machine (for the
    guide and the summary); first removes the cgroups killed graders left."""
    remove_stale_cgroups()
    group = MemoryCgroup.create(limits.memory_mb)
    if group is None:
        return rlimit_bound(limits)
    group.remove()
    return group.describe()


def preexec(limits: Limits, *, cgroup: MemoryCgroup | None = None):
    """A Popen preexec_fn that puts the child in the run's memory *cgroup*
    (if any), sets the run's rlimits (inherited through bwrap and setpriv
    by the kernel and everything it starts), and SIGKILL when the process
    that starts it dies."""
    parent_dies = child_of_this_process()

    def apply() -> None:
        parent_dies()
        if cgroup is not None:
            cgroup.join()
        mb = 1024 * 1024
        for what, value in ((resource.RLIMIT_AS, limits.memory_mb * mb),
                            (resource.RLIMIT_NPROC, limits.processes),
                            (resource.RLIMIT_CPU, limits.cpu_s),
                            (resource.RLIMIT_FSIZE, limits.disk_mb * mb),
                            (resource.RLIMIT_NOFILE, limits.open_files),
                            (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(what, (value, value))
    return apply


CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000


def private_scratch(folder: Path, *, uid: int, size_mb: int) -> None:
    """Mount a tmpfs of *size_mb* owned by *uid* on *folder*, in a mount
    namespace of this process's own (call it before any thread starts): the
    host never sees it, it is capped like the kernel's ``/tmp``, and it
    vanishes with this process.  A sandbox started from here binds it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount --make-rprivate /: {os.strerror(err)}")
    options = f"size={size_mb}m,mode=0700,uid={uid},gid={uid}".encode()
    if libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", 0, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {folder}: {os.strerror(err)}")
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def enter_network_namespace() -> None:
    """Move this process (call it before any thread starts) into a network
    namespace of its own, with its loopback up: the run's kernel and the
    grader's reference peers meet there, and nowhere else."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, _SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (prctl
    PR_SET_PDEATHSIG): a killed grader takes its harnesses with it, and each
    harness its sandbox."""
    _LIBC.prctl(1, 9, 0, 0, 0)   # PR_SET_PDEATHSIG, SIGKILL


def become_subreaper() -> None:
    """Orphans of this process's descendants come to it (PR_SET_CHILD_SUBREAPER),
    not to init: the harness reaps a dead sandbox at once."""
    _LIBC.prctl(36, 1, 0, 0, 0)


def child_of_this_process():
    """A Popen preexec_fn: the child dies with this process (the parent
    check closes the window in which the parent died before the prctl)."""
    parent = os.getpid()

    def apply() -> None:
        die_with_parent()
        if os.getppid() != parent:
            os._exit(1)
    return apply
