# The sandbox bootstrap. Runs as the caller (root, or the caller mapped to root in its own user
# namespace), inside the namespaces where there are some; argv[1] is its JSON config (see
# Sandbox::execute). Mounts (with a mount namespace: a tmpfs becomes the work directory, the
# status file is its own mount, every other mount, the run directory included, is remounted
# read-only and nosuid), empties the capability bounding set, starts the program (as the sandbox
# user where there is one) with the limits, no_new_privs, no capabilities and a seccomp filter
# that refuses Unix sockets, reaps everything until the program is gone, kills what it left
# (where the bootstrap is the PID namespace's init) and writes the program's exit status and CPU
# time to cfg["status"].
import errno, json, os, signal, sys
# A PID namespace's init gets from inside only the signals it handles: Python's SIGINT handler
# would let the program (the same user, not as root) interrupt the bootstrap and leave no status.
signal.signal(signal.SIGINT, signal.SIG_DFL)
cfg = json.loads(sys.argv[1])
status_fd = None
def finish(d):
    path = cfg["status"]
    if status_fd is not None:
        # Opened before the program's root was made, which does not hold it: out of its reach.
        os.ftruncate(status_fd, 0)
        os.lseek(status_fd, 0, os.SEEK_SET)
        os.write(status_fd, json.dumps(d).encode())
        sys.exit(0)
    # Without a root of its own (or before it was made), not as root, the program could write
    # here: whatever it left in the way goes first.
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        import shutil
        shutil.rmtree(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(d, f)
    sys.exit(0)
def unescape(p):
    for a, b in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        p = p.replace(a, b)
    return p
def capabilities(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1], 16)
    raise OSError("no %s in /proc/self/status" % name)
def run_paths(path):
    # The directories an ELF object's DT_RPATH and DT_RUNPATH name ($ORIGIN resolved): where the
    # loader looks for the libraries it links before the system's. Nothing where it is no ELF.
    import struct
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] not in (1, 2):
                return []
            end, wide = "<" if head[5] == 1 else ">", head[4] == 2
            # e_phoff, e_phentsize, e_phnum; a program header's type, offset, address and size
            # in the file; a dynamic entry's tag and value.
            phoff = struct.unpack_from(end + ("Q" if wide else "I"), head, 32 if wide else 28)[0]
            size, count = struct.unpack_from(end + "HH", head, 54 if wide else 42)
            header, fields, entry = (("IIQQQQ", (0, 2, 3, 5), "qQ") if wide
                                     else ("IIIII", (0, 1, 2, 4), "iI"))
            f.seek(phoff)
            table = f.read(size * count)
            loads, dynamic = [], None
            for i in range(count):
                values = struct.unpack_from(end + header, table, i * size)
                kind, offset, address, length = (values[j] for j in fields)
                if kind == 1:  # PT_LOAD
                    loads.append((address, offset, length))
                elif kind == 2:  # PT_DYNAMIC
                    dynamic = (offset, length)
            if dynamic is None:
                return []
            f.seek(dynamic[0])
            raw = f.read(dynamic[1])
            step = struct.calcsize(entry)
            strings, names = None, []
            for i in range(len(raw) // step):
                tag, value = struct.unpack_from(end + entry, raw, i * step)
                if tag == 0:  # DT_NULL
                    break
                if tag == 5:  # DT_STRTAB, an address
                    strings = value
                elif tag in (15, 29):  # DT_RPATH, DT_RUNPATH
                    names.append(value)
            start = next((o + strings - a for a, o, n in loads
                          if strings is not None and a <= strings < a + n), None)
            origin = os.path.dirname(os.path.realpath(path))
            found = []
            for at in names if start is not None else []:
                f.seek(start + at)
                text = f.read(4096).split(b"\0", 1)[0].decode(errors="replace")
                for d in text.split(":"):
                    d = d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
                    if d.startswith("/") and "$" not in d:
                        found.append(os.path.normpath(d))
            return found
    except (OSError, struct.error):
        return []
try:
    # RLIMIT_AS binds each process, not the run: a program that forks its way to more memory
    # than the machine has should be what the OOM killer takes, not ponder with its model.
    # Raising one's own score needs no privilege; the program and its children inherit it.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
    except Exception:
        libc = None
    def failed(what):
        e = ctypes.get_errno()
        return OSError(e, "%s: %s" % (what, os.strerror(e)))
    if cfg["fs"]:
        if libc is None:
            raise OSError("ctypes is unavailable, cannot mount")
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        def mount(src, dst, fstype, flags, data):
            enc = lambda s: None if s is None else s.encode()
            if libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)) != 0:
                raise failed("mount %s" % dst)
        RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC = 1, 2, 4, 8, 32, 4096, 16384
        keep = {"nodev": NODEV, "noexec": NOEXEC, "noatime": 1024, "nodiratime": 2048,
                "relatime": 1 << 21}
        root, status = cfg["root"], cfg["status"]
        # The status file (the bootstrap's, 0600) is written through this descriptor: it is not
        # in the program's root (below), where its source is read-only and its disk a tmpfs.
        status_fd = os.open(status, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        # Inodes capped too (one a page): millions of empty files would pin kernel memory that
        # the size does not count.
        data = "size=%d,nr_inodes=%d,mode=0700" % (cfg["disk"], max(cfg["disk"] // 4096, 1024))
        if cfg["uid"] is not None:
            data += ",uid=%d,gid=%d" % (cfg["uid"], cfg["gid"])
        mount("tmpfs", cfg["work"], "tmpfs", NOSUID | NODEV, data)
        # A root of its own: a tmpfs holding only what Python needs, bound from the host (the
        # system directories, the interpreter's own files, a few devices, /proc), and the run's
        # own paths where they were. The rest of the host (home directories, problem sets,
        # other runs' directories in /tmp) is not there to read; pivot_root leaves no way back.
        new = os.path.join(root, ".root")
        os.mkdir(new, 0o755)
        mount("tmpfs", new, "tmpfs", NOSUID | NODEV, "size=16m,mode=0755")
        def place(path, directory):
            # The host's `path`, at the same place under the new root (its parents made).
            target = new + path
            if os.path.lexists(target):
                return None
            parent = os.path.dirname(target)
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            if os.path.islink(path):
                os.symlink(os.readlink(path), target)
                return None
            if directory:
                os.mkdir(target, 0o755)
            else:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
            return target
        def bind(path, directory=True):
            if not os.path.lexists(path):
                return
            target = place(path, directory)
            if target is not None:
                mount(path, target, None, BIND | REC, None)
        # What the interpreter needs (this bootstrap runs on it too), and no more: a directory
        # that merely holds the executable may be a home directory (`~/bin/python3`) or a
        # project's. The executable, each step of its symlinks; where it is a virtual
        # environment's, that environment's pyvenv.cfg; each prefix's (the environment's, the
        # installation's) standard library and site-packages, `<prefix>/lib/pythonX.Y` (and under
        # `sys.platlibdir`); and the directories of the shared objects it has loaded (libpython,
        # libc, ctypes' libffi), with the run paths they name: where the libraries the standard
        # library's extension modules link are found beyond the system directories. A
        # directory that holds a login user's home (a library left in `~`, a run path `$ORIGIN/..`)
        # is not bound.
        executables = [p for p in (cfg["python"], sys.executable) if os.path.isabs(p)]
        needed = []
        for path in executables:
            for _ in range(40):
                needed.append(path)
                if not os.path.islink(path):
                    break
                path = os.path.join(os.path.dirname(path), os.readlink(path))
            needed.append(os.path.realpath(path))
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        for path in executables:
            for venv in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
                if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
                    needed.append(os.path.join(venv, "pyvenv.cfg"))
                    prefixes.add(venv)
                    break
        version = "python%d.%d" % sys.version_info[:2]
        for prefix in prefixes:
            for lib in ("lib", getattr(sys, "platlibdir", "lib")):
                needed.append(os.path.join(prefix, lib, version))
        # The standard library's own paths (its zip, lib-dynload), wherever this build put them.
        needed += sys.path
        executable = os.path.realpath("/proc/self/exe")
        with open("/proc/self/maps") as f:
            loaded = {l.split(None, 5)[5].rstrip("\n") for l in f if len(l.split(None, 5)) == 6}
        loaded = {p for p in loaded if p.startswith("/") and os.path.isfile(p)}
        linked = {os.path.dirname(p) for p in loaded if p != executable}
        for path in loaded:
            linked.update(run_paths(path))
        needed += linked
        homes = {"/home", "/root"}
        try:
            with open("/etc/passwd") as f:
                for fields in (line.split(":") for line in f):
                    if len(fields) > 5 and fields[2].isdigit():
                        uid = int(fields[2])
                        if uid == 0 or 1000 <= uid < 65534:
                            homes.add(os.path.normpath(fields[5]))
        except OSError:
            pass
        needed = {os.path.normpath(p) for p in needed if os.path.isabs(p)}
        needed = [p for p in needed | {os.path.realpath(p) for p in needed}
                  if not any(h == p or h.startswith(p.rstrip("/") + "/") for h in homes)]
        needed += ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
        bound = []
        for path in sorted(set(needed), key=len):
            # Never the run directory or anything holding it (the host's /tmp, its root); nothing
            # twice.
            holds_run = root == path or root.startswith(path.rstrip("/") + "/")
            if not holds_run and not any(path.startswith(b + "/") for b in bound):
                bind(path, directory=os.path.isdir(path))
                bound.append(path)
        # Of /etc, what the loader, name lookups, time zones, TLS and Python read; not the rest
        # (package managers' and servers' configuration, machine-id).
        os.makedirs(new + "/etc", 0o755)
        import glob
        etc = ["alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group",
               "nsswitch.conf", "host.conf", "hosts", "gai.conf", "localtime", "timezone",
               "ssl", "ca-certificates", "ca-certificates.conf", "pki", "crypto-policies",
               "mime.types", "protocols", "services", "os-release", "lsb-release",
               "debian_version", "locale.alias", "locale.conf"]
        etc += [os.path.basename(p) for p in glob.glob("/etc/python3*")]
        for name in etc:
            path = "/etc/" + name
            bind(path, directory=os.path.isdir(path))
        for device in ("null", "zero", "full", "random", "urandom"):
            bind("/dev/" + device, directory=False)
        # What programs open by name for their standard streams (competitive programming reads
        # /dev/stdin).
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(target, new + "/dev/" + name)
        os.makedirs(new + "/dev/shm", 0o755)
        mount("tmpfs", new + "/dev/shm", "tmpfs", NOSUID | NODEV | NOEXEC, data)
        bind("/proc")
        bind(os.path.join(root, "src"))
        bind(cfg["work"])
        if cfg["uid"] is not None:
            # /dev/stdin reopens the standard input through /proc, which needs access to the
            # pipe itself (ponder's, 0600): the program gets its own input pipe (never a device).
            import stat
            if stat.S_ISFIFO(os.fstat(0).st_mode):
                os.fchown(0, cfg["uid"], cfg["gid"])
        # The IPC namespace's System V shared memory, which RLIMIT_AS does not count once
        # detached: at most the memory limit in all (its defaults are unlimited).
        for name, value in (("shmmax", cfg["memory"]), ("shmall", cfg["memory"] // 4096),
                            ("shmmni", 64)):
            try:
                with open("/proc/sys/kernel/" + name, "w") as f:
                    f.write(str(value))
            except OSError:
                pass
        old = new + "/.old"
        os.mkdir(old, 0o700)
        SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
        if SYS_PIVOT_ROOT is None:
            raise OSError("no pivot_root number for %s" % os.uname().machine)
        libc.syscall.restype = ctypes.c_long
        if libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), new.encode(), old.encode()) != 0:
            raise failed("pivot_root")
        os.chdir("/")
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        if libc.umount2(b"/.old", 2) != 0:  # MNT_DETACH
            raise failed("unmounting the host's root")
        os.rmdir("/.old")
        with open("/proc/self/mountinfo") as f:
            points = [(unescape(l.split()[4]), l.split()[5].split(",")) for l in f]
        for point, opts in points:
            if point in (cfg["work"], "/dev/shm"):
                continue
            flags = REMOUNT | BIND | RDONLY | NOSUID
            for o in opts:
                flags |= keep.get(o, 0)
            mount(None, point, None, flags, None)
    # Capabilities. Without a user switch the program runs as uid 0 in its user namespace, with
    # every capability there (enough to remount the mounts above read-write, as they belong to
    # that namespace): the bounding set must go, and the child clears the rest before exec, so
    # that exec gives it nothing (root's rule: permitted = inheritable | bounding). Here the
    # bootstrap keeps its own permitted set: it still switches users and kills leftovers.
    switch = cfg["uid"] is not None
    privileged = capabilities("CapEff") != 0
    if libc is not None:
        libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        libc.prctl.restype = ctypes.c_int
        libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        libc.capset.restype = ctypes.c_int
    elif privileged:
        raise OSError("ctypes is unavailable, cannot drop capabilities")
    if privileged:
        PR_CAPBSET_DROP = 24
        try:
            for cap in range(64):
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    if ctypes.get_errno() == errno.EINVAL:  # past the last capability
                        break
                    raise failed("dropping capability %d from the bounding set" % cap)
            left = capabilities("CapBnd")
            if left != 0:
                raise OSError("capabilities left in the bounding set: %x" % left)
        except OSError:
            # After a switch to another user the program has no capabilities whatever its
            # bounding set (no_new_privs keeps exec from granting any); a root without
            # CAP_SETPCAP can still run it. Without a switch this is fatal.
            if not switch:
                raise
    if libc is not None:
        # capset(2): _LINUX_CAPABILITY_VERSION_3 for this process, and two zeroed
        # {effective, permitted, inheritable} records.
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        nothing = (ctypes.c_uint32 * 6)()
    import resource, subprocess
    rlimits = []
    for name, soft, hard in cfg["rlimits"]:
        which = getattr(resource, name)
        _, cur = resource.getrlimit(which)
        if cur != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur), min(hard, cur)
        rlimits.append((which, soft, hard))
    # The seccomp filter (a classic BPF program over struct seccomp_data: nr at 0, arch at 4,
    # args from 16). A network namespace cuts IP but not Unix sockets, which live on the
    # filesystem (a Docker daemon's, a session bus, an ssh agent) and are reachable through a
    # read-only mount: socket(AF_UNIX) is refused, and socketpair of datagram sockets (which may
    # connect elsewhere later); io_uring, which can open and connect sockets around the filter,
    # is refused too. Another ABI (i386's socketcall, x32) kills the process. Also refused: the
    # kernel keyrings (shared by every run of the sandbox user, outliving them: a store one run
    # could leave answers in for the next), memory outside RLIMIT_AS (memfd_create), page-cache
    # probes that let runs signal later ones (fadvise, readahead, cachestat), and new namespaces (unshare, setns, clone with a
    # CLONE_NEW* flag; clone3, whose flags a filter cannot read, says ENOSYS so that libc falls
    # back to clone), which would give the program every capability in a user namespace of its
    # own and the kernel code only such a root reaches.
    machine = os.uname().machine
    if machine == "x86_64":
        arch, calls = 0xC000003E, {"socket": 41, "socketpair": 53, "io_uring_setup": 425,
                                   "clone": 56, "clone3": 435, "unshare": 272, "setns": 308,
                                   "add_key": 248, "request_key": 249, "keyctl": 250,
                                   "memfd_create": 319, "fadvise64": 221, "readahead": 187,
                                   "cachestat": 451}
    elif machine == "aarch64":
        arch, calls = 0xC00000B7, {"socket": 198, "socketpair": 199, "io_uring_setup": 425,
                                   "clone": 220, "clone3": 435, "unshare": 97, "setns": 268,
                                   "add_key": 217, "request_key": 218, "keyctl": 219,
                                   "memfd_create": 279, "fadvise64": 223, "readahead": 213,
                                   "cachestat": 451}
    else:
        arch = None
        if cfg["strict"]:
            raise OSError("no seccomp filter for %s: Unix sockets would be reachable" % machine)
    if arch is not None and libc is None:
        raise OSError("ctypes is unavailable, cannot install the seccomp filter")
    def seccomp_program():
        LD, JEQ, JGE, AND, RET = 0x20, 0x15, 0x35, 0x54, 0x06
        ALLOW, KILL, EACCES, ENOSYS = 0x7FFF0000, 0x80000000, 0x00050000 | 13, 0x00050000 | 38
        EPERM, CLONE_NEW = 0x00050000 | 1, 0x7E020000
        # (code, jump-if-true label, jump-if-false label, k); labels resolve to offsets.
        code = [("arch", LD, None, None, 4), (None, JEQ, None, "kill", arch), (None, LD, None, None, 0)]
        if machine == "x86_64":
            code.append((None, JGE, "kill", None, 0x40000000))
        code += [
            (None, JEQ, "socket", None, calls["socket"]),
            (None, JEQ, "pair", None, calls["socketpair"]),
            (None, JEQ, "enosys", None, calls["io_uring_setup"]),
            (None, JEQ, "enosys", None, calls["clone3"]),
            (None, JEQ, "clone", None, calls["clone"]),
        ]
        code += [(None, JEQ, "eperm", None, calls[c])
                 for c in ("unshare", "setns", "add_key", "request_key", "keyctl",
                           "memfd_create", "fadvise64", "readahead", "cachestat")]
        code += [
            (None, RET, None, None, ALLOW),
            ("clone", LD, None, None, 16), (None, AND, None, None, CLONE_NEW),
            (None, JEQ, None, "eperm", 0), (None, RET, None, None, ALLOW),
            # Only IP and netlink sockets (vsock, for one, is not cut by a network namespace).
            ("socket", LD, None, None, 16), (None, JEQ, "allow", None, 2),
            (None, JEQ, "allow", None, 10), (None, JEQ, "allow", "eacces", 16),
            # Only stream and seqpacket pairs (the kernel makes SOCK_RAW a datagram).
            ("pair", LD, None, None, 24), (None, AND, None, None, 0xF), (None, JEQ, "allow", None, 1),
            (None, JEQ, "allow", "eacces", 5),
            ("allow", RET, None, None, ALLOW),
            ("eacces", RET, None, None, EACCES),
            ("eperm", RET, None, None, EPERM),
            ("enosys", RET, None, None, ENOSYS),
            ("kill", RET, None, None, KILL),
        ]
        at = {label: i for i, (label, *_) in enumerate(code) if label}
        jump = lambda i, label: 0 if label is None else at[label] - i - 1
        import struct
        raw = b"".join(struct.pack("=HBBI", op, jump(i, t), jump(i, f), k)
                       for i, (_, op, t, f, k) in enumerate(code))
        return len(code), ctypes.create_string_buffer(raw, len(raw))
    if arch is not None:
        filter_len, filter_buf = seccomp_program()
        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        fprog = SockFprog(filter_len, ctypes.cast(filter_buf, ctypes.c_void_p))
    report_r, report_w = os.pipe()
    # In the child, after the user switch (subprocess does that first) and before exec.
    def limit():
        try:
            for which, soft, hard in rlimits:
                resource.setrlimit(which, (soft, hard))
            if libc is None:
                return
            PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise failed("setting no_new_privs")
            if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
                if ctypes.get_errno() != errno.EINVAL:  # EINVAL: no ambient set (Linux < 4.3)
                    raise failed("clearing the ambient capabilities")
            if libc.capset(ctypes.byref(header), ctypes.byref(nothing)) != 0:
                raise failed("clearing the capabilities")
            PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
            if arch is not None:
                if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
                    raise failed("installing the seccomp filter")
        except BaseException as e:
            # subprocess reports only that preexec_fn failed: say what did.
            os.write(report_w, ("%s: %s" % (type(e).__name__, e)).encode()[:4000])
            raise
    # -I's parts but -E (which would ignore the fixed PYTHONHASHSEED in cfg["env"], so that a
    # set of strings comes out in one order every run): no user site directory (-s), not the
    # script's directory on sys.path (-P). The only PYTHON* variables are the sandbox's, which
    # sets the whole environment (one the program sets for a child of its own gives it nothing
    # it could not do itself). -P is Python 3.11's: before it, -I, and random hashes.
    isolated = ["-s", "-P"] if sys.version_info >= (3, 11) else ["-I"]
    try:
        child = subprocess.Popen([cfg["python"], *isolated, cfg["main"]], cwd=cfg["work"],
            env=cfg["env"], user=cfg["uid"] if switch else None,
            group=cfg["gid"] if switch else None, extra_groups=[] if switch else None,
            preexec_fn=limit)
    except subprocess.SubprocessError as e:
        os.close(report_w)
        raise OSError("starting the program: %s" % (os.read(report_r, 4096).decode() or e))
    os.close(report_w)
    os.close(report_r)
except Exception as e:
    finish({"setup_error": "%s: %s" % (type(e).__name__, e)})
def end_all(*_):
    # The caller is gone (killed, crashed) or stuck past the wall limit it enforces itself: no
    # process of the run outlives it, sleeping forever where no CPU limit reaches it, holding
    # the sandbox user's process count. Where the bootstrap is the PID namespace's init,
    # kill(-1) reaches only the namespace (and its end kills the rest); elsewhere the group.
    try:
        if cfg["fs"] and os.getpid() == 1:
            os.kill(-1, signal.SIGKILL)
        else:
            os.killpg(0, signal.SIGKILL)
    finally:
        os._exit(3)
def watch_caller():
    # The caller reads the standard output until the end: its read end closes only when the
    # caller is gone (or gave up on the run), and a pipe's write end then polls as an error.
    import select
    poll = select.poll()
    poll.register(1, 0)
    while True:
        for _, events in poll.poll():
            if events & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                end_all()
# The program's end is waited for with SIGCHLD blocked (before the thread below starts, which
# inherits the mask: a SIGCHLD it took would be lost) and the deadline kept by that wait's
# timeout, not by a timer signal: a signal the bootstrap handles is one the program can send it
# (not as root it is the same user, and a PID namespace's init is shielded only from the
# signals it leaves at their default), and a SIGALRM handler would let it end the run with no
# status. A SIGCHLD it sends only wakes the wait below, which looks and waits again.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
try:
    import stat, threading
    if stat.S_ISFIFO(os.fstat(1).st_mode):
        threading.Thread(target=watch_caller, daemon=True).start()
except Exception:
    # No thread to be had (a pids limit reached): the deadline below still ends the run.
    pass
import time
deadline = time.monotonic() + cfg["deadline"]
while True:
    try:
        pid, status, usage = os.wait4(-1, os.WNOHANG)
    except ChildProcessError:
        finish({"setup_error": "lost the program"})
    if pid == child.pid:
        break
    if pid == 0:
        left = deadline - time.monotonic()
        if left <= 0:
            end_all()
        signal.sigtimedwait({signal.SIGCHLD}, left)
child.returncode = 0
done = {"cpu_s": usage.ru_utime + usage.ru_stime}
if os.WIFEXITED(status):
    done["code"] = os.WEXITSTATUS(status)
else:
    done["signal"] = os.WTERMSIG(status)
if cfg["fs"] and os.getpid() == 1:
    # The PID namespace's init: nothing the program left may outlive it (or write the status
    # below). kill(-1) here reaches only this namespace; then reap until none is left.
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    while True:
        try:
            os.wait()
        except OSError:
            break
finish(done)
