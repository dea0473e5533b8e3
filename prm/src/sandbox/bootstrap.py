# The sandbox bootstrap. Runs as the caller (root, or the caller mapped to root in its own user
# namespace), inside the namespaces where there are some; argv[1] is its JSON config (see
# Sandbox::execute). Mounts (with a mount namespace: the run directory stays writable, a tmpfs
# becomes the work directory, every other mount is remounted read-only and nosuid), empties the
# capability bounding set, starts the program (as the sandbox user where there is one) with the
# limits, no_new_privs and no capabilities, reaps everything until the program is gone, kills what
# it left (where the bootstrap is the PID namespace's init) and writes the program's exit status
# and CPU time to cfg["status"].
import errno, json, os, signal, sys
cfg = json.loads(sys.argv[1])
def finish(d):
    # Not as root, the program could write here: whatever it left in the way goes first.
    path = cfg["status"]
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
try:
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
        root = cfg["root"]
        mount(root, root, None, BIND | REC, None)
        data = "size=%d,mode=0700" % cfg["disk"]
        if cfg["uid"] is not None:
            data += ",uid=%d,gid=%d" % (cfg["uid"], cfg["gid"])
        mount("tmpfs", cfg["work"], "tmpfs", NOSUID | NODEV, data)
        with open("/proc/self/mountinfo") as f:
            points = [(unescape(l.split()[4]), l.split()[5].split(",")) for l in f]
        for point, opts in points:
            if point == root or point.startswith(root + "/"):
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
        except BaseException as e:
            # subprocess reports only that preexec_fn failed: say what did.
            os.write(report_w, ("%s: %s" % (type(e).__name__, e)).encode()[:4000])
            raise
    try:
        child = subprocess.Popen([cfg["python"], "-I", cfg["main"]], cwd=cfg["work"],
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
while True:
    try:
        pid, status, usage = os.wait4(-1, 0)
    except ChildProcessError:
        finish({"setup_error": "lost the program"})
    if pid == child.pid:
        break
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
