#!/usr/bin/env python3
"""sass_loops.py SASS KERNEL... - the loops of kernels in a `cuobjdump -sass` listing: for each backward branch, the
address range it closes and the instructions inside by opcode (static counts: a branch inside a loop, e.g. the
masking of the last key tile, counts whether it runs or not). Also the generic loads (LD, not LDS/LDG) and the
local-memory spills (LDL/STL) of each kernel. Used for stop 20's loop sizes (bench/RESULTS_FLASH.md)."""
import collections, re, sys

def kernels(text):
    parts = re.split(r"\n\s*Function : (\S+)", text)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}

def instructions(body):
    return [(int(a, 16), t.strip()) for a, t in re.findall(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", body)]

def opcode(t):
    return re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0]

def main():
    text = open(sys.argv[1]).read()
    ks = kernels(text)
    for name in sys.argv[2:]:
        ins = instructions(ks[name])
        ops = collections.Counter(opcode(t) for _, t in ins)
        print(f"{name}: {len(ins)} instructions, generic LD {ops['LD']}, spills LDL {ops['LDL']} STL {ops['STL']}")
        for a, t in ins:
            m = re.search(r"BRA.*?(0x[0-9a-f]+)", t)
            if m and int(m.group(1), 16) < a:
                s = int(m.group(1), 16)
                inside = collections.Counter(opcode(u) for b, u in ins if s <= b <= a)
                print(f"  loop {s:#x}-{a:#x}: {sum(inside.values())} instructions;", ", ".join(f"{k} {v}" for k, v in inside.most_common(12)))

if __name__ == "__main__":
    main()
