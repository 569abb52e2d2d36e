"""What travels to the GPU machine: the 64 MiB limit per call, and a file too big for one call in parts.

Standard library only: the same module runs on the CPU (preparing) and on the GPU machine (joining).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

#: The device tool's limit on what travels in one call (working tree + carried paths).
CARRY_LIMIT = 64 * 2**20
MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_file(src: Path, dests: list[Path], sizes: list[int | None]) -> dict:
    """Cut ``src`` into consecutive parts, part i into folder ``dests[i]`` (``sizes[i]`` bytes, None = rest).

    Each folder gets its part and a copy of the manifest (name, total size, sha256 of the whole,
    part names and sizes), so the joining side can check what it put together.
    """
    total = src.stat().st_size
    manifest = {"name": src.name, "bytes": total, "sha256": sha256(src), "parts": []}
    with open(src, "rb") as f:
        for i, (dest, size) in enumerate(zip(dests, sizes)):
            dest.mkdir(parents=True, exist_ok=True)
            data = f.read() if size is None else f.read(size)
            part = dest / f"{src.name}.part{i + 1}"
            part.write_bytes(data)
            manifest["parts"].append({"file": part.name, "bytes": len(data)})
        if f.read(1):
            raise ValueError(f"{src}: the part sizes {sizes} leave bytes over; make the last one None")
    for dest in dests:
        (dest / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def join_parts(folders: list[Path], dest_dir: Path) -> Path:
    """Put the parts found in ``folders`` back together in ``dest_dir``; check size and sha256.

    Raises FileNotFoundError naming the missing part (e.g. the machine went back between the
    call that brought part 1 and the call that brings part 2), ValueError on a mismatch.
    """
    manifest = None
    for folder in folders:
        if (folder / MANIFEST).exists():
            manifest = json.loads((folder / MANIFEST).read_text())
            break
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in any of {[str(f) for f in folders]}")
    found = {}
    for part in manifest["parts"]:
        for folder in folders:
            if (folder / part["file"]).exists():
                found[part["file"]] = folder / part["file"]
                break
        else:
            raise FileNotFoundError(f"part {part['file']} is in none of {[str(f) for f in folders]}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / manifest["name"]
    tmp = dest_dir / (manifest["name"] + ".joining")
    with open(tmp, "wb") as f:
        for part in manifest["parts"]:
            f.write(found[part["file"]].read_bytes())
    if tmp.stat().st_size != manifest["bytes"] or sha256(tmp) != manifest["sha256"]:
        tmp.unlink()
        raise ValueError(f"{manifest['name']}: the joined parts do not match the manifest's size and sha256")
    os.replace(tmp, out)
    return out


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def travel_bytes(repo: Path, carry: list[str]) -> dict:
    """What one call would send: git's tracked + untracked-not-ignored files, shared/, and ``carry``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    tree = sum(
        (repo / os.fsdecode(name)).stat().st_size
        for name in listed
        if name and (repo / os.fsdecode(name)).is_file()
    )
    shared = tree_bytes(repo / "shared") if (repo / "shared").is_dir() else 0
    carried = {c: tree_bytes(repo / c) if (repo / c).exists() else None for c in carry}
    total = tree + shared + sum(v for v in carried.values() if v)
    return {"tree": tree, "shared": shared, "carry": carried, "total": total, "limit": CARRY_LIMIT}
