"""bench/kernel_summary.py NCU_CSV - sum the GPU time of every kernel launch in an ncu CSV
(`ncu --metrics gpu__time_duration.sum --csv --print-units base ...`) by kernel name; prints a markdown table,
largest first, with each name's share of the total."""
import csv
import sys
from collections import defaultdict

tot, cnt = defaultdict(float), defaultdict(int)
with open(sys.argv[1], newline="", errors="replace") as f:
    lines = [l for l in f if l.startswith('"')]     # ncu prints its own log lines before the CSV
for row in csv.DictReader(lines):
    if row.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = row["Kernel Name"]
    name = name if len(name) <= 110 else name[:107] + "..."
    tot[name] += float(row["Metric Value"].replace(",", "")) * 1e-6   # ns -> ms
    cnt[name] += 1
total = sum(tot.values())
print("total GPU time %.2f ms in %d launches\n" % (total, sum(cnt.values())))
print("| ms | share | launches | kernel |\n|---|---|---|---|")
for name, ms in sorted(tot.items(), key=lambda kv: -kv[1]):
    print("| %.2f | %.1f%% | %d | `%s` |" % (ms, 100 * ms / total, cnt[name], name))
