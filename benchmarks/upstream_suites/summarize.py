"""Summarise results/*.xml: per suite, collected / passed per mode, and control-pass-but-ours-fail lists."""

import xml.etree.ElementTree as ET
from pathlib import Path

R = Path(__file__).parent / "results"


def load(path):
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("classname").split(".")[-1] + "::" + case.get("name")
        status, msg = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                status = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                msg = (el.get("message") or "").strip().splitlines()
                msg = msg[0] if msg else ""
                break
        out[name] = (status, msg)
    return out


for suite in ("transformers", "trl"):
    runs = {m: load(R / f"{suite}_{m}.xml") for m in ("none", "zero", "tenth") if (R / f"{suite}_{m}.xml").exists()}
    if "none" not in runs:
        continue
    ctl = runs["none"]
    print(f"## {suite}")
    print(f"collected (selected): {len(ctl)}")
    for m, res in runs.items():
        counts = {}
        for s, _ in res.values():
            counts[s] = counts.get(s, 0) + 1
        print(f"  {m}: {counts}")
    print("  control failures/errors:")
    for n, (s, msg) in ctl.items():
        if s in ("failed", "error"):
            print(f"    - {n}: {msg[:300]}")
    for m in ("zero", "tenth"):
        if m not in runs:
            continue
        bad = [(n, runs[m].get(n, ("missing", ""))) for n, (s, _) in ctl.items() if s == "passed"]
        bad = [(n, r) for n, r in bad if r[0] != "passed"]
        print(f"  {m}: pass in control, not in {m}: {len(bad)}")
        for n, (s, msg) in bad:
            print(f"    - {n} [{s}]: {msg[:400]}")
        better = [n for n, (s, _) in runs[m].items() if s == "passed" and ctl.get(n, ("",))[0] != "passed"]
        if better:
            print(f"  {m}: pass in {m} but not in control: {better}")
