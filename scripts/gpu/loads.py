"""Groups the parts scripts/gpu/build.sh wrote into as few loads as it can, each at most
LIMIT MiB and 8 paths with SHA256SUMS, for copies with limits on both. The binaries' parts all go in the first
load (all `run.sh bench` needs); SmolLM2's (for `tests` and `forcing`) fill the room left, the
largest first. Prints one load a line, paths relative to the repository root: copy them over in
order and run scripts/gpu/run.sh after each (it keeps what came before).

    python3 scripts/gpu/loads.py [LIMIT_MIB]     # default: the device tool's 64 MiB, less
                                                 # the working tree travelling with it (what
                                                 # git does not ignore) and half a MiB
"""

import os
import subprocess
import sys

MIB = 1024 * 1024
PATHS = 8  # the most paths one device call carries (SHA256SUMS is one of them)


def tree_bytes():
    """What travels with a device call besides the carried paths: the files git tracks, and
    those it does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum(os.path.getsize(p) for p in listed if p and os.path.isfile(p))


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dist = os.path.join("dist", "gpu")
    os.chdir(root)
    if len(sys.argv) > 1:
        limit = float(sys.argv[1]) * MIB
    else:
        limit = 64 * MIB - tree_bytes() - MIB // 2
        print(f"limit {limit / MIB:.1f} MiB a load (64 less the working tree and half a MiB)",
              file=sys.stderr)
    sums = os.path.join(dist, "SHA256SUMS")
    if not os.path.isfile(sums):
        sys.exit(f"{sums} missing: run scripts/gpu/build.sh")
    names = sorted(os.listdir(dist))
    binaries = [os.path.join(dist, n) for n in names if n.startswith("ponder-gpu-bin.tar.xz.part")]
    models = [os.path.join(dist, n) for n in names
              if n.startswith("ponder-gpu-models.tar.xz.part")]
    if not binaries or not models:
        sys.exit(f"{dist}: no parts of ponder-gpu-bin or ponder-gpu-models: run scripts/gpu/build.sh")
    size = os.path.getsize
    loads = [[size(sums), []]]
    if 1 + len(binaries) > PATHS:
        sys.exit(f"the binaries come in {len(binaries)} parts, and a copy takes {PATHS} paths "
                 "with SHA256SUMS: rebuild with a larger PONDER_GPU_PART_MIB")
    for part in binaries:
        if loads[0][0] + size(part) > limit:
            sys.exit(f"the binaries' parts come to more than {limit / MIB:g} MiB, and they "
                     "must all come in the first copy: copy with a larger limit")
        loads[0][0] += size(part)
        loads[0][1].append(part)
    for part in sorted(models, key=size, reverse=True):
        if size(sums) + size(part) > limit:
            sys.exit(f"{part} alone is over {limit / MIB:g} MiB: rebuild with a smaller PONDER_GPU_PART_MIB")
        load = next((load for load in loads
                     if load[0] + size(part) <= limit and 2 + len(load[1]) <= PATHS), None)
        if load is None:
            load = [size(sums), []]
            loads.append(load)
        load[0] += size(part)
        load[1].append(part)
    for i, (total, parts) in enumerate(loads, 1):
        print(f"load {i} ({total / MIB:.1f} MiB): {sums} {' '.join(sorted(parts))}")


if __name__ == "__main__":
    main()
