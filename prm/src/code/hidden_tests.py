# Runs HumanEval's hidden tests with the candidate in a process of its own, so that its grade
# cannot be forged. This process (the judge) reads the trusted code from stdin, all of it before
# the candidate starts: the task's prompt (which defines the helpers some tests call, such as
# encode_cyclic) and its tests (check); they are never on a disk the candidate can read. Then
# check(candidate), where `candidate` is a stand-in that sends each call's arguments to the
# candidate's process and rebuilds its reply here from plain data (None, bool, int, float,
# complex, Fraction, Decimal, str, bytes, range, tuples, lists, sets and dicts of them, and
# iterators and dict views over them; anything else as an opaque stand-in that keeps only its
# truth value, so `assert candidate(s)` reads a returned re.Match as OpenAI's harness does, and
# it equals nothing). solution.py runs only in that process (this file again,
# with --candidate), whose output goes nowhere. So the candidate cannot patch check or this
# process, answer with an object that equals anything, or print the pass mark: this process is made
# non-dumpable first, which keeps its memory, stdin and stdout out of the candidate's reach
# through /proc. The pass mark (from stdin too) is printed when check returns.
import builtins, decimal, fractions, json, numbers, os, struct, sys

ENTRY = {ENTRY}
HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = 1 << 28  # bytes in one message
DEPTH = 200  # nesting
ITEMS = 1 << 20  # items an iterator may yield
KEYS, VALUES, ITEMS_VIEW = type({}.keys()), type({}.values()), type({}.items())
# The candidate's interpreter flags, as the sandbox starts this process (see bootstrap.py): -I
# but for -E, so that it keeps this process's PYTHONHASHSEED (the sandbox's fixed one: a set of
# strings comes out in one order every run), where -P exists (Python 3.11) to stand for -I's
# part that keeps this directory off sys.path.
ISOLATED = ["-s", "-P"] if sys.version_info >= (3, 11) else ["-I"]


def encode(value, depth=0, opaque=False):
    """Data as JSON-ready values; containers and the types JSON lacks are tagged. Lenient in
    what it takes: other numbers (numpy's) become int, float or complex, subclasses of the
    plain types their base, an iterator the items it yields (rebuilt as an iterator). With
    `opaque` (the candidate's replies), what is none of these crosses as its truth value."""
    if depth > DEPTH:
        raise ValueError("a value nested more than %d deep" % DEPTH)
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return value
    kids = lambda items: [encode(v, depth + 1, opaque) for v in items]
    pairs = lambda items: [[encode(k, depth + 1, opaque), encode(v, depth + 1, opaque)] for k, v in items]
    if t is complex:
        return {"t": "complex", "v": [value.real, value.imag]}
    if t is fractions.Fraction:
        return {"t": "fraction", "v": [value.numerator, value.denominator]}
    if t is decimal.Decimal:
        return {"t": "decimal", "v": str(value)}
    if t is range:
        return {"t": "range", "v": [value.start, value.stop, value.step]}
    if t is KEYS:
        return {"t": "keys", "v": kids(value)}
    if t is VALUES:
        return {"t": "values", "v": kids(value)}
    if t is ITEMS_VIEW:
        return {"t": "items", "v": pairs(value)}
    if t is bytearray:
        return {"t": "bytearray", "v": bytes(value).decode("latin-1")}
    if getattr(getattr(value, "dtype", None), "kind", None) == "b" and getattr(value, "ndim", 1) == 0:
        return bool(value)  # numpy's bool
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, memoryview)):
        return {"t": "bytes", "v": bytes(value).decode("latin-1")}
    if isinstance(value, bytearray):
        return encode(bytearray(value), depth, opaque)
    if isinstance(value, fractions.Fraction):
        return encode(fractions.Fraction(int(value.numerator), int(value.denominator)), depth, opaque)
    if isinstance(value, decimal.Decimal):
        return encode(decimal.Decimal(value), depth, opaque)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, numbers.Complex):
        return encode(complex(value), depth, opaque)
    if isinstance(value, dict):
        return {"t": "dict", "v": pairs(value.items())}
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return {"t": base.__name__, "v": kids(value)}
    if hasattr(t, "__next__") and hasattr(t, "__iter__"):
        items = []
        for item in value:
            if len(items) == ITEMS:
                raise ValueError("an iterator that yields more than %d items" % ITEMS)
            items.append(item)
        return {"t": "iter", "v": kids(items)}
    if opaque:
        # Not data (a re.Match, an object of the candidate's own class): its type's name and
        # truth value, read here in the candidate's process.
        try:
            truth = bool(value)
        except Exception:
            truth = None
        return {"t": "opaque", "v": [str(t.__qualname__)[:200], truth]}
    raise TypeError("a %s cannot cross between the tests and the candidate" % t.__name__)


class Opaque:
    """What the candidate returned that is not data: true or false as it was, equal to nothing
    but itself, and no more (a test that reads more of it fails, as it would on a wrong type)."""
    __slots__ = ("name", "truth")

    def __init__(self, name, truth):
        self.name, self.truth = name, truth

    def __bool__(self):
        if self.truth is None:
            raise TypeError("the candidate's %s has no truth value" % self.name)
        return self.truth

    def __repr__(self):
        return "<the candidate's %s>" % self.name


def decode(value, depth=0):
    """The inverse of encode, strict: anything else is an error."""
    if depth > DEPTH:
        raise ValueError("a value nested more than %d deep" % DEPTH)
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is not dict or set(value) != {"t", "v"}:
        raise ValueError(("not a value: %r" % (value,))[:200])
    tag, v = value["t"], value["v"]
    kids = lambda: [decode(x, depth + 1) for x in v]
    ints = lambda n: type(v) is list and len(v) == n and all(type(x) is int for x in v)
    if type(v) is list and tag in ("list", "tuple", "set", "frozenset", "iter", "keys", "values"):
        items = kids()
        if tag == "list":
            return items
        if tag == "tuple":
            return tuple(items)
        if tag == "set":
            return set(items)
        if tag == "frozenset":
            return frozenset(items)
        if tag == "iter":
            return iter(items)
        if tag == "keys":
            return dict.fromkeys(items).keys()
        return dict(enumerate(items)).values()
    if tag in ("dict", "items") and type(v) is list and all(type(p) is list and len(p) == 2 for p in v):
        d = {decode(k, depth + 1): decode(x, depth + 1) for k, x in v}
        return d if tag == "dict" else d.items()
    if tag in ("bytes", "bytearray") and type(v) is str:
        return v.encode("latin-1") if tag == "bytes" else bytearray(v.encode("latin-1"))
    if tag == "complex" and type(v) is list and len(v) == 2 and all(type(x) in (int, float) for x in v):
        return complex(v[0], v[1])
    if tag == "fraction" and ints(2) and v[1]:
        return fractions.Fraction(v[0], v[1])
    if tag == "decimal" and type(v) is str:
        return decimal.Decimal(v)
    if tag == "range" and ints(3) and v[2]:
        return range(*v)
    if tag == "opaque" and type(v) is list and len(v) == 2 and type(v[0]) is str and (v[1] is None or type(v[1]) is bool):
        return Opaque(v[0], v[1])
    raise ValueError("not a value: tag %r" % (tag,))


def send(fd, message):
    data = json.dumps(message).encode("utf-8")
    data = struct.pack(">Q", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def receive(fd):
    """A message, or None at end of file (the other side is gone)."""
    def exactly(n):
        chunks = []
        while n:
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
    head = exactly(8)
    if head is None:
        return None
    (n,) = struct.unpack(">Q", head)
    if n > LIMIT:
        raise ValueError("a message of %d bytes" % n)
    body = exactly(n)
    return None if body is None else json.loads(body)


def failure(error):
    """[type name, message, traceback, nearest built-in ancestor, args] of an exception; the name
    is qualified by its module unless it is a built-in one, and args are null where they cannot
    cross."""
    import traceback
    t = type(error)
    name = t.__name__ if t.__module__ == "builtins" else "%s.%s" % (t.__module__, t.__qualname__)
    base = next((c.__name__ for c in t.__mro__ if c.__module__ == "builtins"), "Exception")
    try:
        args = encode(list(error.args))
    except Exception:
        args = None
    trace = "".join(traceback.format_exception(t, error, error.__traceback__))[-20000:]
    return [name, str(error)[:10000], trace, base, args]


def candidate_process(r, w):
    """The candidate's side: solution.py, then calls as they come."""
    try:
        # A module of its own, registered as `solution`: dataclasses (with string annotations,
        # as `from __future__ import annotations` makes them all) and pickle look the module
        # of the candidate's classes up in sys.modules.
        import types
        module = types.ModuleType("solution")
        module.__builtins__ = builtins
        sys.modules["solution"] = module
        ns = module.__dict__
        with open(os.path.join(HERE, "solution.py"), encoding="utf-8") as f:
            exec(compile(f.read(), "solution.py", "exec"), ns)
        if ENTRY not in ns:
            raise NameError("name %r is not defined" % ENTRY)
        function = ns[ENTRY]
        if not callable(function):
            raise TypeError("%r is not callable" % ENTRY)
    except BaseException as e:
        send(w, {"error": failure(e)})
        return
    send(w, {"ready": True})
    while True:
        call = receive(r)
        if call is None:
            return
        try:
            args = decode(call["args"])
            kwargs = decode(call["kwargs"])
            reply = {"ok": encode(function(*args, **kwargs), opaque=True)}
        except BaseException as e:
            reply = {"error": failure(e)}
        send(w, reply)


class CandidateError(Exception):
    pass


# Built-in exceptions that steer control flow where they are raised (a StopIteration inside the
# tests' map() would end it early, skipping the rest of the test): never raised as themselves.
STEERING = ("StopIteration", "StopAsyncIteration")


def builtin_exception(name):
    """The built-in exception class `name`, unless it steers control flow."""
    kind = getattr(builtins, name, None) if name.isidentifier() and name not in STEERING else None
    return kind if isinstance(kind, type) and issubclass(kind, Exception) else None


def raise_from(error):
    """Raises here what the candidate raised there, with its args: a built-in exception as
    itself, any other under its own name as a subclass of its nearest built-in ancestor (a test
    may expect a ValueError and get the candidate's own subclass of it)."""
    name, message, trace, base, args = (list(error) + [""] * 5)[:5] if type(error) is list else [""] * 5
    name, message, trace, base = str(name)[:200], str(message), str(trace), str(base)
    sys.stderr.write("The candidate's process reported:\n%s\n" % trace)
    kind = builtin_exception(name)
    if kind is None:
        ancestor = builtin_exception(base)
        try:
            kind = type(name or "CandidateError", (ancestor, CandidateError) if ancestor else (CandidateError,), {})
        except TypeError:  # an ancestor whose layout will not mix
            kind = type(name or "CandidateError", (CandidateError,), {})
    try:
        raised = kind(*decode(args)) if args else kind(message)
    except Exception:
        raised = CandidateError("%s: %s" % (name, message))
    raise raised


def trusted(source, name):
    """Compiles trusted source as `name`, its lines kept in linecache for tracebacks (a file of
    that name in the working directory, which the candidate can write, is never read: see the
    excepthook in judge)."""
    import linecache
    code = compile(source, name, "exec")
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    return code


def judge():
    import ctypes, signal, subprocess, traceback
    # Tracebacks from the traceback module, which reads source lines through linecache: the
    # interpreter's own reads them from the file named, which the candidate could write.
    sys.excepthook = traceback.print_exception
    given = json.loads(sys.stdin.buffer.read())
    prompt, tests, mark = given["prompt"], given["tests"], given["mark"]
    # Not starting is the sandbox's failure, not the candidate's (the process limit is shared by
    # every run of the sandbox user): said after the mark, so that the run is redone, not failed.
    try:
        # Not dumpable: another process of the same user cannot read this one's memory or open
        # its file descriptors (stdin, stdout) through /proc, nor ptrace it. Children are
        # dumpable again.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
        r_child, w_parent = os.pipe()
        r_parent, w_child = os.pipe()
        child = subprocess.Popen(
            [sys.executable, *ISOLATED, "-B", os.path.abspath(__file__), "--candidate", str(r_child), str(w_child)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(r_child, w_child), close_fds=True,
        )
    except OSError as e:
        print("%s unavailable: %s" % (mark, e), flush=True)
        sys.exit(3)
    os.close(r_child)
    os.close(w_child)

    def answer():
        try:
            reply = receive(r_parent)
        except (OSError, ValueError) as e:
            reply = None
            sys.stderr.write("unreadable reply from the candidate's process: %s\n" % e)
        if reply is None:
            status = child.wait()
            if status < 0:
                # Killed (the CPU limit's SIGXCPU, a SIGKILL): end the same way, so the run
                # is classified as if the candidate had run here.
                sys.stdout.flush()
                if -status != signal.SIGKILL:
                    signal.signal(-status, signal.SIG_DFL)
                os.kill(os.getpid(), -status)
            raise CandidateError("the candidate's process exited with status %d before it answered" % status)
        if type(reply) is not dict:
            raise CandidateError("unreadable reply from the candidate's process")
        return reply

    first = answer()
    if "error" in first:
        raise_from(first["error"])

    def candidate(*args, **kwargs):
        send(w_parent, {"args": encode(list(args)), "kwargs": encode(dict(kwargs))})
        reply = answer()
        if "ok" in reply:
            return decode(reply["ok"])
        raise_from(reply.get("error"))

    ns = {"__name__": "tests", "__builtins__": builtins}
    try:
        code = trusted(prompt, "prompt.py")
    except SyntaxError:
        code = None  # not code on its own: the tests get no helpers from it
    if code is not None:
        exec(code, ns)
    ns[ENTRY] = candidate
    exec(trusted(tests, "tests.py"), ns)
    ns["check"](candidate)
    os.close(w_parent)
    print(mark, flush=True)


# Ints of any size cross (Python 3.11 refuses to print one past 4300 digits by default).
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)
if len(sys.argv) == 4 and sys.argv[1] == "--candidate":
    candidate_process(int(sys.argv[2]), int(sys.argv[3]))
else:
    judge()
