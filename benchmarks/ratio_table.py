"""Print the fastconv / PyTorch speed ratio per benchmark group from a pytest-benchmark JSON file.

    python benchmarks/ratio_table.py bench_cpu.json

ratio = peer median time / fastconv median time, so > 1 means fastconv is faster. Rows whose
group has several fastconv implementations (kernel families) list each.
"""

import json
import math
import sys
from collections import defaultdict


def table(path):
    data = json.load(open(path))
    groups = defaultdict(dict)
    for b in data["benchmarks"]:
        impl = b.get("extra_info", {}).get("impl", b["name"])
        groups[b["group"]][impl] = b["stats"]["median"]
    rows, ratios = [], []
    for group in sorted(groups):
        impls = groups[group]
        peer = next((impls[k] for k in ("torch", "cudnn") if k in impls), None)
        for impl, t in sorted(impls.items()):
            if impl in ("torch", "cudnn"):
                continue
            ratio = peer / t if peer else float("nan")
            rows.append((group, impl, t * 1e3, peer * 1e3 if peer else float("nan"), ratio))
            if group.startswith("conv") and peer:
                ratios.append(ratio)
    print(f"{'group':48s} {'impl':10s} {'fastconv ms':>12s} {'torch ms':>10s} {'ratio':>7s}")
    for g, impl, t, p, r in rows:
        print(f"{g:48s} {impl:10s} {t:12.3f} {p:10.3f} {r:7.2f}")
    if ratios:
        gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geometric mean of conv ratios over {len(ratios)} rows: {gm:.2f}")


if __name__ == "__main__":
    table(sys.argv[1] if len(sys.argv) > 1 else "bench_cpu.json")
