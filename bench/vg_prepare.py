"""Visual Genome preparation benchmark (not a test): time and peak memory of
``ivr prepare-data --vg`` on generated VG 1.4 copies of a given number of objects.

    python bench/vg_prepare.py                          # 50k objects
    python bench/vg_prepare.py --objects 50000,1000000 --dir /tmp/vg_bench

Each copy has 35 objects per image (about Visual Genome's mean), 1 or 2 names per object
drawn from 5000 names with Zipf-like frequencies, boxes within 800 x 600 images (1% partly
outside), an ``object_alias.txt``, and the keys of the official files (``synsets``,
``merged_object_ids``, ``coco_id``, ...). The image files are stubs of a few bytes:
preparation only checks that they exist. The command (which also mines the knowledge graph
of the train split) runs as a subprocess; its peak memory is its largest anonymous resident
memory (``RssAnon``, sampled every 10 ms), measured the same way for a process that only
imports the CLI (Python, torch and the libraries), so the difference is what the
preparation holds. ``prepare_vg()`` alone is the reading and writing without the knowledge
graph (whose mining loads the prepared train split, as training does).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OBJECTS_PER_IMAGE = 35
NAMES = 5000


def generate(root: Path, objects: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    images = max(1, objects // OBJECTS_PER_IMAGE)
    names = [f"thing {i}" if i % 3 else f"Thing{i} " for i in range(NAMES)]
    weights = [1 / (i + 1) for i in range(NAMES)]
    root.mkdir(parents=True)
    (root / "object_alias.txt").write_text("".join(f"thing {i},thing{i}x\n" for i in range(0, 500, 7)))
    image_data = []
    for folder in ("VG_100K", "VG_100K_2"):
        (root / folder).mkdir()
    for i in range(1, images + 1):
        folder = "VG_100K" if i % 2 else "VG_100K_2"
        (root / folder / f"{i}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
        image_data.append({"width": 800, "url": f"https://cs.stanford.edu/people/rak248/"
                           f"{folder}/{i}.jpg", "height": 600, "image_id": i, "coco_id": None,
                           "flickr_id": None})
    (root / "image_data.json").write_text(json.dumps(image_data))
    object_id = 1_000_000
    with open(root / "objects.json", "w") as f:
        f.write("[")
        for i in range(1, images + 1):
            entry = {"image_id": i, "image_url": image_data[i - 1]["url"], "objects": []}
            count = objects // images + (i <= objects % images)
            for _ in range(count):
                object_id += 1
                w, h = rng.randint(1, 400), rng.randint(1, 300)
                x, y = rng.randint(0, 800 - w), rng.randint(0, 600 - h)
                if rng.random() < 0.01:
                    x += 600  # partly outside
                chosen = rng.choices(names, weights, k=rng.choice((1, 1, 1, 2)))
                entry["objects"].append({"synsets": [f"{n.strip().lower()}.n.01" for n in chosen],
                                         "h": h, "object_id": object_id,
                                         "merged_object_ids": [], "names": chosen, "w": w,
                                         "y": y, "x": x})
            f.write(("" if i == 1 else ", ") + json.dumps(entry))
        f.write("]")


def measure(command: list[str]) -> tuple[float, float]:
    """(seconds, peak anonymous resident memory in MB) of a subprocess, sampled every 10 ms
    from /proc (file-backed pages, such as the shared libraries, are left out: the kernel
    drops and re-reads them under memory pressure, so they say nothing of the program)."""
    start = time.perf_counter()
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
    peak = 0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                anon = next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))
            peak = max(peak, anon)
        except (OSError, StopIteration):
            pass
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        errors.seek(0)
        raise SystemExit(f"{' '.join(command)} failed:\n{errors.read().decode()}")
    return seconds, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="50000", help="comma-separated object counts")
    parser.add_argument("--dir", default="/tmp/ivr_vg_bench", type=Path,
                        help="scratch folder (replaced)")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    import_s, baseline = measure([sys.executable, "-c", "import ivr_cli.main"])
    print(f"a process that only imports the CLI: {import_s:.1f} s, peak anonymous memory "
          f"{baseline:.0f} MB\n")
    print("| objects | what | objects.json MB | s | peak anonymous MB | held by the "
          "preparation, MB | of objects.json |")
    print("|---|---|---|---|---|---|---|")
    for objects in (int(v) for v in args.objects.split(",")):
        root = args.dir / f"vg_{objects}"
        generate(root, objects)
        size = (root / "objects.json").stat().st_size / 2**20
        runs = {"ivr prepare-data --vg": [
            sys.executable, "-m", "ivr_cli", "prepare-data", "--vg", str(root), "--out",
            str(root / "prepared"), "-q"], "prepare_vg() alone": [
            sys.executable, "-c", "import ivr_cli.main; from ivr_core.data.vg import prepare_vg; "
            f"prepare_vg({str(root)!r}, {str(root / 'alone')!r}, show_progress=False)"]}
        for what, command in runs.items():
            seconds, peak = measure(command)
            print(f"| {objects} | {what} | {size:.1f} | {seconds:.1f} | {peak:.0f} | "
                  f"{peak - baseline:.0f} | {(peak - baseline) / size:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
