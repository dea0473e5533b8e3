# The sandbox bootstrap. Runs as the caller (root, normally), inside the namespaces where there
# are some; argv[1] is its JSON config (see Sandbox::execute). Mounts (with a mount namespace:
# the run directory stays writable, a tmpfs becomes the work directory, every other mount is
# remounted read-only and nosuid), starts the program as the sandbox user with the limits and
# no_new_privs, reaps everything (it is the PID namespace's init where there is one) until the
# program is gone, and writes the program's exit status and CPU time to cfg["status"].
import json, os, sys
cfg = json.loads(sys.argv[1])
def finish(d):
    with open(cfg["status"], "w") as f:
        json.dump(d, f)
    sys.exit(0)
def unescape(p):
    for a, b in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        p = p.replace(a, b)
    return p
try:
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
    except Exception:
        libc = None
    if cfg["fs"]:
        if libc is None:
            raise OSError("ctypes is unavailable, cannot mount")
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        def mount(src, dst, fstype, flags, data):
            enc = lambda s: None if s is None else s.encode()
            if libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "mount %s: %s" % (dst, os.strerror(e)))
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
    import resource, subprocess
    rlimits = []
    for name, soft, hard in cfg["rlimits"]:
        which = getattr(resource, name)
        _, cur = resource.getrlimit(which)
        if cur != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur), min(hard, cur)
        rlimits.append((which, soft, hard))
    def limit():
        for which, soft, hard in rlimits:
            resource.setrlimit(which, (soft, hard))
        if libc is not None:
            libc.prctl(38, 1, 0, 0, 0)
    switch = cfg["uid"] is not None
    child = subprocess.Popen([cfg["python"], "-I", cfg["main"]], cwd=cfg["work"], env=cfg["env"],
        user=cfg["uid"] if switch else None, group=cfg["gid"] if switch else None,
        extra_groups=[] if switch else None, preexec_fn=limit)
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
finish(done)
