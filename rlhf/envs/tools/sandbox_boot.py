"""Bootstrap of the `python` tool's sandbox: runs in the child process, before the user's code.

Started by :func:`rlhf.envs.tools.sandbox.run_python` as
`python -I sandbox_boot.py '<json settings>'` in a fresh temporary directory holding the code as
`main.py`. It uses the standard library only (it is run by path, not imported as part of
`rlhf`), and in this order:

1. joins the sandbox's pids cgroup, when the parent made one (a kernel cap on processes);
2. sets the resource limits: CPU seconds, address space, file size, open files, no core dumps,
   and for a non-root user RLIMIT_NPROC (root ignores it, hence the cgroup);
3. when the kernel allows it, moves into new network and PID namespaces (with a new user
   namespace when not root): no network interface but a down loopback, and every process the
   code starts dies with the namespace's first process, which itself dies with this bootstrap
   (PR_SET_PDEATHSIG), so killing the bootstrap kills everything;
4. installs an audit hook (PEP 578) that refuses, in the user's code: starting processes
   (unless allowed), ctypes and `_posixsubprocess`, signalling other processes when there is no
   PID namespace, sockets when there is no network namespace, writing, deleting or renaming
   outside the temporary directory, and reading outside it and Python's own installation and
   system libraries. An audit hook is a tripwire, not a security boundary (PEP 578 says so): it
   stops ordinary code and accidents, while the kernel mechanisms of steps 1-3 are the
   guarantees;
5. runs `main.py` as `__main__`; an uncaught exception prints its traceback and exits 1.
"""

import json
import os
import resource
import select
import signal
import sys
import traceback

CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1

_PROCESS_EVENTS = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn")
_PROCESS_EVENTS += ("subprocess.Popen", "pty.spawn")
_BLOCKED_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess"}
_WRITE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown"}
_WRITE_EVENTS |= {"os.truncate", "os.symlink", "os.link", "os.utime", "shutil.rmtree"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_SYSTEM_READ_ROOTS = ("/usr", "/lib", "/lib32", "/lib64", "/dev/null", "/dev/urandom", "/dev/zero")
_SYSTEM_READ_ROOTS += ("/etc/localtime", "/proc/self")


def _join_cgroup(path: str) -> None:
    with open(os.path.join(path, "cgroup.procs"), "w") as procs:
        procs.write(str(os.getpid()))


def _user_tasks(uid: int) -> int:
    """Tasks (processes and threads) of `uid`, which RLIMIT_NPROC counts."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
            except OSError:
                continue
            if int(fields.get("Uid", "-1").split()[0]) == uid:
                count += int(fields.get("Threads", "1"))
    return count


def _set_limits(settings: dict) -> None:
    def cap(kind: int, soft: int, hard: int | None = None) -> None:
        resource.setrlimit(kind, (soft, soft if hard is None else hard))

    # The hard CPU limit is a second later: SIGXCPU at the soft limit, SIGKILL at the hard one.
    cap(resource.RLIMIT_CPU, settings["cpu_s"], settings["cpu_s"] + 1)
    cap(resource.RLIMIT_AS, settings["memory_mb"] << 20)
    cap(resource.RLIMIT_FSIZE, settings["max_file_mb"] << 20)
    cap(resource.RLIMIT_NOFILE, 64)
    cap(resource.RLIMIT_CORE, 0)
    if os.geteuid() != 0:
        # RLIMIT_NPROC counts every task of the user, so the cap is relative to what runs now.
        cap(resource.RLIMIT_NPROC, _user_tasks(os.getuid()) + settings["max_processes"])


def _enter_namespaces(cpu_s: int) -> bool:
    """Unshare the network and PID namespaces and fork into the new PID namespace.

    Returns True in the process that goes on to run the code (the namespace's first process),
    False when the namespaces are not available (nothing changed). The bootstrap process itself
    never returns: it waits for the code's process and exits with its status.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET | CLONE_NEWPID | (CLONE_NEWUSER if os.geteuid() != 0 else 0)
    if libc.unshare(flags) != 0:
        return False
    # The parent holds `alive`'s write end open while it lives; getppid() cannot tell, since
    # the parent is outside the new PID namespace (it reads 0 there).
    alive, parent_lives = os.pipe()
    child = os.fork()
    if child == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        os.close(parent_lives)
        if select.select([alive], [], [], 0)[0]:  # EOF: it died before prctl took effect
            os._exit(137)
        os.close(alive)
        return True
    _, status, usage = os.wait4(child, 0)
    _exit_like(status, usage.ru_utime + usage.ru_stime >= cpu_s)


def _exit_like(status: int, spent_cpu: bool) -> None:
    """End this process as the code's process ended, so the parent sees the same status.

    A namespace's first process ignores SIGXCPU (it is PID 1 there), so the CPU limit reaches
    it as the hard limit's SIGKILL; that is reported as SIGXCPU, as it is without namespaces.
    """
    if not os.WIFSIGNALED(status):
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)
    number = os.WTERMSIG(status)
    if number in (signal.SIGKILL, signal.SIGXCPU) and spent_cpu:
        number = signal.SIGXCPU
    if number not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    os._exit(128 + number)


def _inside(path: object, roots: tuple[str, ...]) -> bool:
    if isinstance(path, int):  # an already open descriptor
        return True
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def _make_hook(settings: dict, sandboxed_net: bool, sandboxed_pids: bool):
    """The audit hook of step 4 (see the module docstring)."""
    workdir = os.path.realpath(os.getcwd())
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    read_roots = (workdir, *sorted(map(os.path.realpath, prefixes)), *_SYSTEM_READ_ROOTS)
    allow_processes = settings["allow_processes"]

    def refuse(what: str) -> None:
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = bool(set(mode or "") & set("wax+")) or bool((flags or 0) & _WRITE_FLAGS)
            if not _inside(path, (workdir,) if writing else read_roots):
                refuse(f"{'writing' if writing else 'reading'} {path!r}")
        elif event in ("os.listdir", "os.scandir"):
            if args[0] is not None and not _inside(args[0], read_roots):
                refuse(f"listing {args[0]!r}")
        elif event in _WRITE_EVENTS:
            paths = [arg for arg in args[:2] if isinstance(arg, (str, bytes, os.PathLike))]
            if not all(_inside(path, (workdir,)) for path in paths):
                refuse(f"{event} outside the working directory")
        elif event == "import" and args[0] in _BLOCKED_IMPORTS:
            refuse(f"importing {args[0]}")
        elif event.startswith("ctypes."):
            refuse("ctypes")
        elif event.startswith(_PROCESS_EVENTS) and not allow_processes:
            refuse("starting processes")
        elif event in ("os.kill", "os.killpg") and not sandboxed_pids:
            refuse("signalling processes")
        elif event.startswith("socket.") and not sandboxed_net:
            refuse("network access")

    return hook


def main() -> None:
    settings = json.loads(sys.argv[1])
    if settings.get("cgroup"):
        _join_cgroup(settings["cgroup"])
    _set_limits(settings)
    namespaced = settings["namespaces"] and _enter_namespaces(settings["cpu_s"])
    source = open("main.py", encoding="utf-8").read()
    code = compile(source, "main.py", "exec")
    sys.argv = ["main.py"]
    sys.addaudithook(_make_hook(settings, namespaced, namespaced))
    globals_ = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    del settings, source
    for name in _BLOCKED_IMPORTS:  # the bootstrap's own ctypes must not serve the code
        sys.modules.pop(name, None)
    try:
        exec(code, globals_)
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - the code's failure is its output
        _print_traceback(error)
        sys.exit(1)


def _print_traceback(error: BaseException) -> None:
    """The code's traceback without the bootstrap's own frames (which mean nothing to it)."""
    report = traceback.TracebackException.from_exception(error)
    own = os.path.abspath(__file__)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if os.path.abspath(frame.filename) != own]
    )
    sys.stderr.write("".join(report.format()))


if __name__ == "__main__":
    main()
