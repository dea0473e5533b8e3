# The sandbox self-check, run as the sandbox user: forks until it cannot (children wait on a
# pipe, so they all exit when it closes), tries the loopback network and a Unix socket, tries to write outside
# its directory and reads its capability sets. {ATTEMPTS} and {ESCAPE} are substituted before it
# runs.
import errno, json, os, socket
r, w = os.pipe()
forked = 0
for _ in range({ATTEMPTS}):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    forked += 1
os.close(w)
for _ in range(forked):
    os.wait()
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2).close()
    network = "connected"
except OSError as e:
    network = "unreachable" if e.errno in (errno.ENETUNREACH, errno.EADDRNOTAVAIL) else "refused"
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
    unix = "created"
except OSError as e:
    unix = "refused" if e.errno == errno.EACCES else "failed: %s" % os.strerror(e.errno)
try:
    open("{ESCAPE}", "w").close()
except OSError:
    pass
caps = {}
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            caps[key] = int(value, 16)
print(json.dumps({"uid": os.getuid(), "forked": forked, "network": network, "unix": unix,
                  "caps": caps}))
