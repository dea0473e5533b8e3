# Runs a candidate against tests in one process; the sandbox runs it as main.py, next to
# solution.py (the candidate) and tests.json ({"timeout_s": float, "wall_s": float, "tests":
# [{"call", "expected", "origin"}]}). Prints one line per test, after MARK, as JSON; candidate
# output is captured per test, and what it writes to sys.stderr dropped (as the hidden tests do). A test times out after timeout_s of CPU time (the process's, so a
# loaded machine does not time out a test that would pass on an idle one), or wall_s of wall-clock
# time (a test that waits: sleeps, blocks on a read). Loading solution.py may take as long as
# three tests (a table or sieve built at import).
# A candidate that catches the timeout (a bare `except:` in a loop) gets it again; a test in
# which it was raised at all timed out, whatever it returned; if the call still runs on, the
# test is recorded as timed out and the harness starts again after it (exec of itself, the
# test to start from in PONDER_FROM_TEST), so the tests after it still run. A call the timers
# cannot interrupt (one long call into C: `sum(range(10**11))`, a huge power; Python runs a
# handler only between bytecodes) is ended by the kernel: a third timer, ITIMER_VIRTUAL, past
# both, with SIGVTALRM's default action, kills the harness; ponder records the test as timed
# out and starts the harness again after it (tests.json's "start"), as it does after any other
# death in a test (a segfault, os._exit, the run's limits), recorded as that test's error.
import ast, builtins, contextlib, hashlib, importlib, io, json, math, os, signal, sys, traceback, types

MARK = "{MARK}"
HERE = os.path.dirname(os.path.abspath(__file__))
out = sys.stdout


def emit(record):
    out.write(MARK + json.dumps(record) + "\n")
    out.flush()


def read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def short(text, n=1000):
    if len(text) <= n:
        return text
    # Cut to show; the length and a digest of the whole keep apart texts that differ only past
    # the cut (S* clusters programs by these outputs).
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return "%s... (%d characters in all, sha256 %s)" % (text[:n], len(text), digest)


def exception_line(e):
    return short("".join(traceback.format_exception_only(type(e), e)).strip(), 2000)


class TestTimeout(BaseException):
    pass


# What the candidate writes to sys.stderr (logging, warnings, debug prints), read by no one:
# the sandbox's output limit would otherwise end the run of a correct function that logs a
# lot, where the hidden tests (stderr to /dev/null) pass it. A real file, as the hidden tests'
# is: `sys.stderr.buffer`, `fileno()` and `encoding` work as they do there.
discard = io.TextIOWrapper(open(os.devnull, "wb"), encoding="utf-8", errors="backslashreplace")


# The test running (None while loading) and how often its timer has fired.
running = {"i": None, "fired": 0, "captured": None}
# How long after its first timeout a call that caught it may run on (CPU or wall seconds).
GRACE_S = 0.5
# How much more CPU time, past its grace, a call the handler cannot reach gets before the kernel
# ends it.
HARD_S = 1.0


def alarm(signum, frame):
    running["fired"] += 1
    if running["fired"] == 1:
        raise TestTimeout()
    # The candidate caught the timeout and runs on: give up on this call.
    disarm()
    captured = running["captured"]
    stdout = short(captured.getvalue()) if captured is not None else ""
    if running["i"] is None:
        emit({"load_error": "loading the program did not finish in time (it caught the timeout)"})
        os._exit(0)
    emit({"i": running["i"], "status": "timeout", "stdout": stdout})
    # The program loads again in the new process: a failure there is the reload's.
    emit({"restart": True})
    env = dict(os.environ, PONDER_FROM_TEST=str(running["i"] + 1))
    argv = getattr(sys, "orig_argv", None) or [sys.executable, "-I", os.path.join(HERE, "main.py")]
    os.execve(sys.executable, argv, env)


def arm(tests=1):
    running["fired"] = 0
    signal.setitimer(signal.ITIMER_PROF, config["timeout_s"] * tests, GRACE_S)
    signal.setitimer(signal.ITIMER_REAL, config["wall_s"] * tests, GRACE_S)
    # User CPU time: fires (killing the harness) only where the handler above could not run.
    signal.setitimer(signal.ITIMER_VIRTUAL, config["timeout_s"] * tests + 2 * GRACE_S + HARD_S)


def disarm():
    # All three (interval timers outlive an exec of the harness).
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.setitimer(signal.ITIMER_PROF, 0)
    signal.setitimer(signal.ITIMER_VIRTUAL, 0)


def undefined_names(expr):
    tree = ast.parse(expr, mode="eval")
    # Names the expression binds itself: comprehension targets, lambda parameters, := targets.
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    names = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id not in bound and node.id not in ns
                and not hasattr(builtins, node.id) and node.id not in names):
            names.append(node.id)
    return names


# Standard modules a call may name without the program importing them (`f(math.inf)`,
# `f(sys.maxsize)`): deterministic ones only (an input that calls `random` would give each
# program another value), and none whose name a docstring uses as a placeholder (`f(string)`).
STDLIB = frozenset(["math", "cmath", "sys", "itertools", "functools", "collections",
                    "fractions", "decimal", "re", "statistics", "heapq", "bisect", "typing"])


def call_scope(missing):
    # The names a call needs that are standard modules, imported for it (as the program that
    # imported them would see them: whether an input runs does not hang on a program's
    # imports); the scope it runs in, and the names still undefined.
    extra = {}
    for name in missing:
        if name in STDLIB:
            try:
                extra[name] = importlib.import_module(name)
            except Exception:
                pass
    left = [name for name in missing if name not in extra]
    return (dict(ns, **extra) if extra else ns), left


def canonical(x):
    # repr, with set elements and dict items in a fixed order: two programs that build one set
    # in different orders may print it two ways, and where the sandbox cannot fix the hash seed
    # (Python before 3.11) string hashes change with every process (S* would tell them apart).
    # Floats to 9 significant digits: programs that agree but for rounding (sum(xs) / len(xs)
    # is 2.1999999999999997 where statistics.mean gives 2.2) agree, as the tests' own tolerance
    # (1e-6) has them.
    if type(x) is float:
        return repr(float("%.9g" % x))
    if type(x) in (set, frozenset) and x:
        body = "{" + ", ".join(sorted(canonical(e) for e in x)) + "}"
        return body if type(x) is set else "frozenset(%s)" % body
    if type(x) is list:
        return "[" + ", ".join(canonical(e) for e in x) + "]"
    if type(x) is tuple:
        return "(" + ", ".join(canonical(e) for e in x) + ("," if len(x) == 1 else "") + ")"
    if type(x) is dict:
        # Equal dicts built in another order are equal (==, as the hidden tests compare).
        items = sorted("%s: %s" % (canonical(k), canonical(v)) for k, v in x.items())
        return "{" + ", ".join(items) + "}"
    return repr(x)


def same(got, expected):
    try:
        if bool(got == expected):
            return True
    except Exception:
        return False
    numbers = (int, float)
    if isinstance(got, numbers) and isinstance(expected, numbers):
        # Tolerance only where a float is involved: two ints that differ are different.
        if isinstance(got, float) or isinstance(expected, float):
            if not isinstance(got, bool) and not isinstance(expected, bool):
                return math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(got, (list, tuple)) and type(got) is type(expected) and len(got) == len(expected):
        return all(same(a, b) for a, b in zip(got, expected))
    return False


config = json.loads(read("tests.json"))
signal.signal(signal.SIGALRM, alarm)
signal.signal(signal.SIGPROF, alarm)
signal.signal(signal.SIGVTALRM, signal.SIG_DFL)
# The program runs in a module of its own, registered as `solution`: dataclasses (with string
# annotations, as `from __future__ import annotations` makes them all) and pickle look the
# module of its classes up in sys.modules.
solution = types.ModuleType("solution")
solution.__builtins__ = builtins
sys.modules["solution"] = solution
ns = solution.__dict__
# Where a harness started again after a test it gave up on goes on (read before the candidate
# loads: it could set the variable).
start = int(os.environ.get("PONDER_FROM_TEST", config.get("start", 0)))
LOAD_TESTS = 3
captured = io.StringIO()
running["captured"] = captured
try:
    arm(LOAD_TESTS)
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(discard):
            exec(compile(read("solution.py"), "solution.py", "exec"), ns)
    finally:
        disarm()
    if running["fired"]:
        raise TestTimeout()
except TestTimeout:
    emit({"load_error": "loading the program did not finish in time (%g s of CPU time, %g s in all)"
          % (config["timeout_s"] * LOAD_TESTS, config["wall_s"] * LOAD_TESTS)})
    sys.exit(0)
except BaseException as e:
    emit({"load_error": exception_line(e), "traceback": short(traceback.format_exc(), 4000)})
    sys.exit(0)
# Loaded: a kill from here on is a test's, not the load's.
emit({"loaded": True})

for index, test in enumerate(config["tests"]):
    if index < start:
        continue
    record = {"i": index}
    try:
        scope, missing = call_scope(undefined_names(test["call"]))
    except SyntaxError:
        emit(dict(record, status="skipped", reason="the call is not a Python expression"))
        continue
    if missing:
        emit(dict(record, status="skipped", reason="the call uses undefined name `%s`" % missing[0]))
        continue
    text = test["expected"]
    expected, as_output = None, False
    if text is not None:
        try:
            expected = eval(text, {"__builtins__": builtins})
        except Exception:
            if test["origin"] != "doctest":
                emit(dict(record, status="skipped", reason="the expected value is not a Python expression"))
                continue
            as_output = True
    captured = io.StringIO()
    running["i"], running["captured"] = index, captured
    arm()
    try:
        try:
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(discard):
                got = eval(test["call"], scope)
        finally:
            disarm()
        # Returned after catching its timeout: it still ran past it.
        if running["fired"]:
            raise TestTimeout()
    except TestTimeout:
        emit(dict(record, status="timeout", stdout=short(captured.getvalue())))
        continue
    except BaseException as e:
        # Caught its timeout and raised something else: still a timeout.
        if running["fired"]:
            emit(dict(record, status="timeout", stdout=short(captured.getvalue())))
        else:
            emit(dict(record, status="error", error=exception_line(e), stdout=short(captured.getvalue())))
        continue
    try:
        try:
            got_repr = canonical(got)
        except RecursionError:
            got_repr = repr(got)
    except Exception as e:
        got_repr = "<repr failed: %s>" % exception_line(e)
    if text is None:
        passed = True
    elif as_output:
        # A doctest shows the value as the interpreter printed it: its own repr, or (a set
        # of strings) in the order some run happened to print.
        shown = [captured.getvalue() + ("" if got is None else r + "\n") for r in (repr(got), got_repr)]
        passed = any(o.strip() == text.strip() for o in shown)
    else:
        passed = same(got, expected)
    emit(dict(record, status="passed" if passed else "failed", got=short(got_repr),
              stdout=short(captured.getvalue())))
emit({"done": True})
