# Runs HumanEval's hidden tests: solution.py, then tests.py (which defines check), then
# check(ENTRY), all in one namespace whose __name__ is not "__main__"; prints MARK when check
# returns, so a candidate that exits early does not pass.
import builtins, os

MARK = "{MARK}"
ENTRY = {ENTRY}
HERE = os.path.dirname(os.path.abspath(__file__))
ns = {"__name__": "solution", "__builtins__": builtins}
for name in ("solution.py", "tests.py"):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        exec(compile(f.read(), name, "exec"), ns)
if ENTRY not in ns:
    raise NameError("name %r is not defined" % ENTRY)
ns["check"](ns[ENTRY])
print(MARK, flush=True)
