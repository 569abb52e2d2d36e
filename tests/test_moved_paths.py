"""Old import paths (before the layer packages) work for one release and say where the module went.

Run in a fresh interpreter: an old path warns only on its first import in a process.
"""

from __future__ import annotations

import json
import subprocess
import sys

from neftune._moved import MOVED, REMOVED_IN, new_path

PROBE = r"""
import importlib, json, sys, warnings
from neftune._moved import MOVED
out = {}
for old, new in MOVED.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    out[old] = {
        "same": module is importlib.import_module(new),
        "name": module.__name__,
        "spec": module.__spec__.name,
        "warnings": [(w.category.__name__, str(w.message), w.filename) for w in caught],
    }
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from neftune.hooks import activate as old_activate
    from neftune.data.formats import load_records as old_load
    import neftune.instructions.checkers as old_checkers
import neftune
from neftune.finetune.data.formats import load_records
import neftune.finetune.instructions.checkers as checkers
out["_names"] = {
    "activate": old_activate is neftune.activate,
    "load_records": old_load is load_records,
    "submodule": old_checkers is checkers,
    "again": [str(w.message) for w in caught],
}
print(json.dumps(out))
"""


def _probe() -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_old_path_gives_the_module_and_a_deprecation_warning():
    found = _probe()
    for old, new in MOVED.items():
        seen = found[old]
        assert seen["same"] and seen["name"] == new and seen["spec"] == new, (old, seen)
        mine = [
            w for w in seen["warnings"] if w[0] == "DeprecationWarning" and w[1].startswith(f"{old} moved")
        ]
        assert len(mine) == 1, (old, seen["warnings"])
        assert new in mine[0][1] and REMOVED_IN in mine[0][1]
        assert mine[0][2] == "<string>", ("the warning should point at the import", mine[0])
    names = found["_names"]
    assert names["activate"] and names["load_records"] and names["submodule"]
    # neftune.hooks was imported above: no second warning; the two submodules are new old paths
    assert [m.split(" ")[0] for m in names["again"]] == [
        "neftune.data.formats",
        "neftune.instructions.checkers",
    ]


def test_new_path_maps_packages_and_their_submodules():
    assert new_path("neftune.training") == "neftune.finetune.training"
    assert new_path("neftune.data.formats") == "neftune.finetune.data.formats"
    assert new_path("neftune.hooks") == "neftune.activation.hooks"
    assert new_path("neftune.cli_options") == "neftune.cli.options"
    assert new_path("neftune.noise") is None  # did not move
    assert new_path("neftune.dataset") is None  # a prefix of a moved name is not that name
