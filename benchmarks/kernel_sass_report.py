#!/usr/bin/env python
"""Compile the fused noise kernels for sm_90 (H100/H200) on a machine without a GPU and count, per element:
SASS instructions, integer multiplies, registers, spills, and the width of the loads and stores.

Triton compiles for a ``GPUTarget("cuda", 90, 32)`` without a device (its bundled ptxas makes the
cubin, its bundled cuobjdump disassembles it). Each configuration is compiled as the launcher
would build it for a 8 x 2048 x 4096 batch: the tile and warps of ``pick_blocks``, FMA contraction
off, the pointer / hidden-size / stride arguments specialised as divisible by 16 (true for every
usual hidden size), the row count, seed and scale not specialised.

Counted from the disassembly (``cuobjdump -sass``), NOPs excluded:

  instr_per_element   static instructions / elements per thread. The noise kernels are straight-line
                      code (no loop) in the modes given scales or one scale, so static = executed.
                      (``cu_seqlens`` and segment-id modes run a short loop: counted once.)
  multiplies_per_element  IMAD / IMUL instructions that multiply: every IMAD* and IMUL* except
                      IMAD.MOV (a move), IMAD.SHL (a shift) and IMAD.IADD (an add), which the
                      compiler issues on the multiply-add unit without multiplying
  imad_all_per_element    every IMAD* / IMUL*, moves and shifts included
  registers, spills   ``cuobjdump -res-usage`` (REG; LOCAL bytes, STL/LDL instructions)
  loads / stores      LDG / STG instructions by width (LDG.E.128 = 128-bit vectors)
  occupancy_by_registers  resident warps per SM allowed by the registers (65536 per SM, allocated
                      per warp in units of 256), out of 64

Targets (issue 27) for uniform bf16: <= 30 instructions and <= 10 multiplies per element, <= 40
registers, 0 spills, 128-bit loads and stores. The first kernel (one Philox call per element,
``benchmarks/_kernel_v1.py``) is compiled beside it for comparison.

    python benchmarks/kernel_sass_report.py --out benchmarks/results/sm90-kernel-sass.json
    python benchmarks/kernel_sass_report.py --only uniform-bf16      # one configuration
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels only

import _common  # noqa: F401  (puts this checkout's src/ on the path)
import torch

SHAPE = (8, 2048, 4096)
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
NON_MULTIPLY = ("IMAD.MOV", "IMAD.SHL", "IMAD.IADD")
TARGETS = {
    "instr_per_element": 30,
    "multiplies_per_element": 10,
    "registers": 40,
    "spills": 0,
    "ld_st_bits": 128,
}


def _pointer(dtype: str) -> str:
    return "*" + {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}[dtype]


def configurations() -> list[dict]:
    """(name, kernel, signature, constexprs, options, elements per thread) for every report row."""
    from neftune.kernels import _triton
    from neftune.kernels.scales import SCALE_CONST, SCALE_CU, SCALE_TOKEN, SCALE_TOKEN2

    b, t, d = SHAPE
    dev = _triton.device_code()
    configs = []
    noise_sig = {
        "x_ptr": None,
        "out_ptr": None,
        "n_rows": "i32",
        "n_cols": "i32",
        "x_stride": "i32",
        "out_stride": "i32",
        "seed": "i64",
        "scale_value": "fp32",
        "alpha_bits": "i64",
        "scale_ptr": "*fp32",
        "scale2_ptr": "*fp32",
        "aux_ptr": "*i32",
        "n_aux": "i32",
        "aux_steps": "i32",
    }
    aligned = ("x_ptr", "out_ptr", "n_cols", "x_stride", "out_stride", "scale_ptr", "scale2_ptr", "aux_ptr")
    modes = {"given": SCALE_TOKEN, "one": SCALE_CONST, "cu_seqlens": SCALE_CU, "segment_ids": SCALE_TOKEN2}
    for dtype in ("bf16", "fp16", "fp32"):
        torch_dtype = TORCH_DTYPES[dtype]
        group = _triton.group_size(torch_dtype)
        block_rows, block_cols, warps = _triton.pick_blocks(d, torch_dtype.itemsize, group)
        for dist in ("uniform", "symmetric", "gaussian", "none"):
            for scales, mode in modes.items():
                if scales != "given" and not (dtype == "bf16" and dist == "uniform"):
                    continue
                name = f"{dist}-{dtype}" + ("" if scales == "given" else f"-scales-{scales}")
                configs.append(
                    {
                        "name": name,
                        "kernel": "noise_rows_kernel",
                        "fn": dev.noise_rows_kernel,
                        "signature": noise_sig | {"x_ptr": _pointer(dtype), "out_ptr": _pointer(dtype)},
                        "aligned": aligned,
                        "constexprs": {
                            "DIST": _triton.DIST_CODES[dist],
                            "GROUP": group,
                            "SCALE_MODE": mode,
                            "BLOCK_ROWS": block_rows,
                            "BLOCK_COLS": block_cols,
                            "INT64": False,
                        },
                        "num_warps": warps,
                        "elements_per_thread": block_rows * block_cols // (warps * 32),
                        "what": f"{dist} noise, {dtype}, per-token scales {scales}",
                    }
                )
    block = _triton.FLAT_BLOCK
    configs.append(
        {
            "name": "uniform-bf16-flat-fallback",
            "kernel": "noise_flat_kernel",
            "fn": dev.noise_flat_kernel,
            "signature": noise_sig | {"x_ptr": "*bf16", "out_ptr": "*bf16"},
            "aligned": ("x_ptr", "out_ptr", "scale_ptr"),  # d % 8 != 0: sizes not divisible
            "constexprs": {"DIST": 0, "GROUP": 8, "SCALE_MODE": SCALE_TOKEN, "BLOCK": block, "INT64": False},
            "num_warps": _triton.NUM_WARPS,
            "elements_per_thread": block // (_triton.NUM_WARPS * 32),
            "what": "uniform noise, bf16, hidden size not a multiple of 8 (flat kernel)",
        }
    )
    for has_pos in (False, True):
        configs.append(
            {
                "name": "scan-segment-ids" + ("-and-positions" if has_pos else ""),
                "kernel": "segment_scales_kernel",
                "fn": dev.segment_scales_kernel,
                "signature": {
                    "mask_ptr": "*i64",
                    "pos_ptr": "*i64",
                    "out_ptr": "*fp32",
                    "out2_ptr": "*fp32",
                    "flag_ptr": "*i32",
                    "c0_ptr": "*i32",
                    "pad_ptr": "*i1",
                    "p0_ptr": "*i32",
                    "ign_ptr": "*i1",
                    "T": "i32",
                    "d": "i32",
                    "alpha_bits": "i64",
                },
                "aligned": (
                    "mask_ptr",
                    "pos_ptr",
                    "out_ptr",
                    "out2_ptr",
                    "flag_ptr",
                    "c0_ptr",
                    "p0_ptr",
                    "d",
                ),
                "constexprs": {
                    "HAS_MASK": True,
                    "SEG_IDS": True,
                    "HAS_POS": has_pos,
                    "HAS_PAD": False,
                    "HAS_IGNORE": False,
                    "CHUNK": 1024,
                },
                "num_warps": 4,
                "elements_per_thread": None,  # per token, loops over the row
                "what": "per-token scales from a mask (0/1 or segment ids)"
                + (" and position ids" if has_pos else "")
                + ", one program per row, 1024 tokens per step",
            }
        )
    # The first kernel (commit 6c4009d), as it was launched for 8 x 2048 x 4096.
    import _kernel_v1
    import triton

    v1 = triton.jit(do_not_specialize=["seed"])(_kernel_v1._add_noise_kernel)
    rows_v1, cols_v1, warps_v1 = _kernel_v1.pick_blocks(b * t, d)
    for dtype in ("bf16", "fp32"):
        configs.append(
            {
                "name": f"v1-uniform-{dtype}",
                "kernel": "v1 _add_noise_kernel",
                "fn": v1,
                "signature": {
                    "x_ptr": _pointer(dtype),
                    "out_ptr": _pointer(dtype),
                    "scale_ptr": "*fp32",
                    "n_rows": "i32",
                    "n_cols": "i32",
                    "x_row_stride": "i32",
                    "out_row_stride": "i32",
                    "seed": "i64",
                },
                "aligned": (
                    "x_ptr",
                    "out_ptr",
                    "scale_ptr",
                    "n_rows",
                    "n_cols",
                    "x_row_stride",
                    "out_row_stride",
                ),
                "constexprs": {"DIST": 0, "BLOCK_ROWS": rows_v1, "BLOCK_COLS": cols_v1},
                "num_warps": warps_v1,
                "elements_per_thread": rows_v1 * cols_v1 // (warps_v1 * 32),
                "what": f"the first kernel: uniform, {dtype}, one Philox call per element",
            }
        )
    return configs


def tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def compile_one(cfg: dict) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(cfg["signature"])
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in cfg["aligned"]}
    src = ASTSource(fn=cfg["fn"], signature=cfg["signature"], constexprs=cfg["constexprs"], attrs=attrs)
    compiled = triton.compile(
        src,
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": cfg["num_warps"], "enable_fp_fusion": False},
    )
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        sass = subprocess.run(
            [tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True, check=True
        ).stdout
        res = subprocess.run(
            [tool("cuobjdump"), "-res-usage", str(cubin)], capture_output=True, text=True, check=True
        )
    usage = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", res.stdout))
    ops = []
    for line in sass.splitlines():
        m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m and m.group(1) != "NOP":
            ops.append(m.group(1))
    opcodes = Counter(ops)
    imad = [o for o in ops if o.startswith(("IMAD", "IMUL"))]
    multiplies = [o for o in imad if not o.startswith(NON_MULTIPLY)]
    loads = Counter(o for o in ops if o.startswith("LDG"))
    stores = Counter(o for o in ops if o.startswith("STG"))
    spills = sum(n for o, n in opcodes.items() if o.startswith(("STL", "LDL")))
    regs = int(usage.get("REG", 0))
    per_warp = -(-regs * 32 // 256) * 256  # registers are allocated per warp in units of 256
    warps_by_regs = min(64, 65536 // per_warp // cfg["num_warps"] * cfg["num_warps"]) if regs else None
    ept = cfg["elements_per_thread"]
    ptx = compiled.asm["ptx"]
    row = {
        "name": cfg["name"],
        "what": cfg["what"],
        "kernel": cfg["kernel"],
        "constexprs": cfg["constexprs"],
        "num_warps": cfg["num_warps"],
        "elements_per_thread": ept,
        "instructions": len(ops),
        "multiplies": len(multiplies),
        "imad_all": len(imad),
        "registers": regs,
        "local_bytes": int(usage.get("LOCAL", 0)),
        "spill_instructions": spills,
        "shared_bytes": int(usage.get("SHARED", 0)),
        "loads": dict(loads),
        "stores": dict(stores),
        "occupancy_by_registers": None if warps_by_regs is None else f"{warps_by_regs}/64 warps",
        "top_opcodes": dict(Counter(o.split(".")[0] for o in ops).most_common(12)),
        "ptx_f64_sqrt_div_ieee": ("sqrt.rn.f64" in ptx and "div.rn.f64" in ptx) if "f64" in ptx else None,
    }
    if ept:
        row["instr_per_element"] = len(ops) / ept
        row["multiplies_per_element"] = len(multiplies) / ept
        row["imad_all_per_element"] = len(imad) / ept
    return row


def verdict(row: dict) -> dict:
    """Each target for the row: met or not (rows without per-element counts get none)."""
    if row.get("instr_per_element") is None:
        return {}
    widest_ld = max((int(m.group(1)) for o in row["loads"] if (m := re.search(r"\.(\d+)$", o))), default=32)
    widest_st = max((int(m.group(1)) for o in row["stores"] if (m := re.search(r"\.(\d+)$", o))), default=32)
    return {
        "instr_per_element<=30": row["instr_per_element"] <= TARGETS["instr_per_element"],
        "multiplies_per_element<=10": row["multiplies_per_element"] <= TARGETS["multiplies_per_element"],
        "registers<=40": row["registers"] <= TARGETS["registers"],
        "no_spills": row["spill_instructions"] == 0 and row["local_bytes"] == 0,
        "128_bit_ld_st": widest_ld >= 128 and widest_st >= 128,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help="comma list of configuration names (default: all)")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = p.parse_args(argv)
    import triton

    from neftune.finetune.io import write_json_atomic

    configs = configurations()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {c["name"] for c in configs}
        if unknown:
            p.error(
                f"--only: unknown configuration(s) {sorted(unknown)}; known: {[c['name'] for c in configs]}"
            )
        configs = [c for c in configs if c["name"] in wanted]
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas_path = get_ptxas(90).path  # the ptxas triton runs for sm_90
    ptxas = (
        subprocess.run([ptxas_path, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    )
    rows = []
    print(
        f"sm_90, triton {triton.__version__}, {ptxas[-1] if ptxas else 'ptxas ?'}; shape {'x'.join(map(str, SHAPE))}"
    )
    print(f"{'configuration':<34}{'instr/el':>9}{'mul/el':>8}{'regs':>6}{'spill':>6}  loads / stores")
    for cfg in configs:
        row = compile_one(cfg)
        row["targets_met"] = verdict(row)
        rows.append(row)
        per = (
            f"{row['instr_per_element']:>9.2f}{row['multiplies_per_element']:>8.2f}"
            if row.get("instr_per_element") is not None
            else f"{row['instructions']:>9}{'':>8}"
        )
        print(
            f"{row['name']:<34}{per}{row['registers']:>6}{row['spill_instructions']:>6}  "
            f"{dict(row['loads'])} / {dict(row['stores'])}"
        )
    if args.out is not None:
        write_json_atomic(
            args.out,
            {
                "benchmark": "kernel_sass_report",
                "target": "cuda sm_90 (compile only, no device)",
                "command": " ".join([sys.executable, *sys.argv]),
                "triton": triton.__version__,
                "ptxas": f"{Path(ptxas_path).name}: {ptxas[-1]}" if ptxas else None,
                "torch": torch.__version__,
                "shape": list(SHAPE),
                "targets": TARGETS,
                "definitions": {
                    "instr_per_element": "static SASS instructions (NOPs excluded) / elements per thread",
                    "multiplies": "IMAD*/IMUL* except IMAD.MOV, IMAD.SHL, IMAD.IADD",
                    "imad_all": "every IMAD*/IMUL*",
                    "spill_instructions": "STL/LDL in the SASS",
                },
                "rows": rows,
            },
        )
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
