"""Per-epoch cost of the harness (model.train.fit) against the reference notebook's epoch, in one run.

    python benchmarks/epoch_speed.py                       # CPU, quick-profile net (base 8)
    python benchmarks/epoch_speed.py --device cuda --base 64   # a GPU, the reference's full-size net

Same data (embedded tiles, 80/20 split via data.split_indices, seed 0), same net config, same
initial weights, batch 16. Measured in the same process:

* harness epoch: ``fit`` for ``--epochs`` epochs (with its validation count-MAE); the first
  epoch is a warm-up and excluded when 2+ epochs run;
* the reference notebook's epoch (benchmarks/reference_loop.py): per-item Dataset + DataLoader + per-batch copy +
  fp32 + full training- and validation-set loss passes after the epoch; warm-up excluded alike;
* samples/s of the harness training step, its FLOPs (FlopCounterMode) and the fraction of the
  machine's matmul peak (large torch.mm in fp32 and bf16) it reaches;
* peak memory: RSS (getrusage, and per-phase VmHWM where Linux lets it be reset), CUDA
  max_memory_allocated on a GPU;
* torch.compile against eager for the same training step, in a child process with a timeout
  and a fresh inductor cache (so the build time is a cold build).

Every code path is the same on CPU and CUDA; only synchronisation and the memory counter differ.
``--write`` puts the results table into BENCHMARKS.md between the speed markers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import reference_loop  # noqa: E402
import torch  # noqa: E402
from common import BENCH, machine, write_section  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import data  # noqa: E402
from model.device import pick_device, resolve_precision, to_tensor  # noqa: E402
from model.scoring import mae_by_setting  # noqa: E402
from model.train import TrainConfig, fit, seeded_net, train_step  # noqa: E402
from model.unet import UNet, UNetConfig, count_parameters  # noqa: E402

# ----------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_peak_mb() -> float:
    """Process peak RSS so far (getrusage; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_hwm() -> bool:
    """Reset the kernel's per-process peak RSS (VmHWM); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float | None:
    try:
        m = re.search(r"^VmHWM:\s*(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        return int(m.group(1)) / 1024 if m else None
    except OSError:
        return None


class Phase:
    """Peak memory of one phase: VmHWM since reset (CPU), max_memory_allocated (CUDA)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        self.reset = reset_hwm()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self.rss_mb = hwm_mb() if self.reset else None
        self.rss_total_mb = rss_peak_mb()
        self.cuda_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        return False


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.5) -> float:
    """Best FLOP/s of square torch.mm over a few sizes."""
    best = 0.0
    for n in (1024, 2048, 4096) if device.type == "cuda" else (1024, 2048):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)
        sync(device)
        reps, t0 = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            reps += 1
            if reps % 2 == 0:
                sync(device)
                if time.perf_counter() - t0 > seconds / 2:
                    break
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def step_fn(net, opt, precision, device):
    """The harness's own training step (``model.train.train_step``: reference config, BCE) as a closure."""
    config, generator = TrainConfig(), torch.Generator().manual_seed(0)
    return lambda xb, yb: train_step(net, opt, xb, yb, config, precision, generator)


def time_steps(step, batches, device, n: int, warmup: int = 3) -> float:
    """Median seconds of one step over ``n`` timed steps (after ``warmup``)."""
    for i in range(warmup):
        step(*batches[i % len(batches)])
    sync(device)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        step(*batches[i % len(batches)])
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def count_flops(fn, *args) -> int:
    with FlopCounterMode(display=False) as fc:
        fn(*args)
    return fc.get_total_flops()


# ----------------------------------------------------------------------------- compile (child)


def compile_child(args) -> dict:
    """Eager vs torch.compile step time for the harness step; run in a child process."""
    device = pick_device(args.device)
    precision = resolve_precision("auto", device)
    cfg = UNetConfig(args.depth, args.upsample, args.base)
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.rand(args.batch, 1, 128, 128, generator=g).to(device),
            torch.rand(args.batch, 1, 128, 128, generator=g).to(device),
        )
        for _ in range(4)
    ]
    out = {"precision": precision}
    net = seeded_net(cfg, 0, device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    out["eager_step_s"] = time_steps(step_fn(net, opt, precision, device), batches, device, args.steps)
    net = seeded_net(cfg, 0, device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    compiled = torch.compile(net)
    step = step_fn(compiled, opt, precision, device)
    t0 = time.perf_counter()
    try:
        step(*batches[0])
        sync(device)
    except Exception as exc:  # inductor needs a C++ compiler etc.: record, don't crash
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        return out
    out["build_s"] = time.perf_counter() - t0
    out["compiled_step_s"] = time_steps(step, batches, device, args.steps)
    return out


def run_compile(args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--_compile-child",
        "--device",
        args.device,
        "--base",
        str(args.base),
        "--depth",
        str(args.depth),
        "--upsample",
        args.upsample,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
    ]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}  # cold build: no earlier cache
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.compile_timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish within {args.compile_timeout} s (build included)"}
        wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"child exited {p.returncode}: {tail}"[:300]}
    res = json.loads(lines[-1])
    res["child_wall_s"] = wall
    return res


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--base", type=int, default=8, help="U-Net base width (quick profile 8, full 64)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--upsample", default="interp")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each loop; the first is a warm-up when >= 2")
    p.add_argument("--tiles", type=int, help="use only the first N embedded tiles (smoke tests)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="timed steps for step throughput / compile")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")
    p.add_argument("--compile-timeout", type=int, default=300)
    p.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    p.add_argument("--json", type=Path, help="also dump the raw results here")
    p.add_argument("--from-json", type=Path, help="re-render the table from an earlier --json dump (no measuring)")
    p.add_argument("--_compile-child", dest="compile_child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compile_child:
        print(json.dumps(compile_child(args)), flush=True)
        return 0
    if args.from_json:
        res = json.loads(args.from_json.read_text())
        table = report(res)
        print(table)
        if args.write:
            write_section("speed", table)
            print(f"written to {BENCH}")
        return 0
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])])
    device = pick_device(args.device)
    precision = resolve_precision("auto", device)
    info = machine()
    info["device"] = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    print(f"machine: {info}\ncommand: {command}", flush=True)

    images, masks = data.load_train(data.DEFAULT_TRAIN)
    counts = data.load_tile_ints(data.DEFAULT_TRAIN, "counts", len(images))
    if args.tiles:
        images, masks, counts = images[: args.tiles], masks[: args.tiles], counts[: args.tiles]
    tr, va = data.split_indices(len(images), 0.2, 0)
    Xtr, Ytr, Xva, Yva, Cva = images[tr], masks[tr], images[va], masks[va], counts[va]
    cfg = UNetConfig(args.depth, args.upsample, args.base)
    res = {
        "machine": info,
        "command": command,
        "n_train": len(tr),
        "n_val": len(va),
        "precision": precision,
        "config": cfg.to_dict(),
        "batch": args.batch,
        "epochs": args.epochs,
    }
    print(f"data: {len(tr)} train / {len(va)} val tiles; net {cfg}; harness precision {precision}", flush=True)

    # (a) harness: fit with the study's per-epoch score (the reference's counting, best offset)
    settings = [{"counter": "components", "threshold": 0.5, "offset": o} for o in range(-1, 3)]

    def score(prob):
        return min(m for m, _ in mae_by_setting(prob, Cva, settings))

    with Phase(device) as mem_h:
        net = seeded_net(cfg, 0, device)
        res["n_params"] = count_parameters(net)
        result = fit(
            net,
            TrainConfig(lr=2e-4, epochs=args.epochs, batch_size=args.batch, seed=0),
            Xtr,
            Ytr,
            Xva,
            Yva,
            score_fn=score,
        )
    ep = [r.seconds for r in result.history]
    res["harness_epochs_s"] = ep
    res["harness_epoch_s"] = float(np.mean(ep[1:] if len(ep) > 1 else ep))
    res["harness_val_mae"] = [r.val_mae for r in result.history]
    print(f"harness epochs: {[round(e, 2) for e in ep]} s", flush=True)

    # (b) the notebook's epochs, same initial weights
    with Phase(device) as mem_s:
        torch.manual_seed(0)
        snet = UNet(cfg).to(device)  # the notebook's: default NCHW layout, fp32
        sopt = torch.optim.Adam(snet.parameters(), lr=2e-4)
        train_loader, val_loader = reference_loop.reference_loaders(Xtr, Ytr, Xva, Yva, args.batch, seed=0)
        ref_eps = [
            reference_loop.reference_epoch(snet, sopt, train_loader, val_loader, device) for _ in range(args.epochs)
        ]
    res["reference_epochs"] = ref_eps
    use = ref_eps[1:] if len(ref_eps) > 1 else ref_eps
    for k in ("seconds", "train_s", "train_eval_s", "val_eval_s"):
        res[f"reference_{k}"] = float(np.mean([e[k] for e in use]))
    res["speedup"] = res["reference_seconds"] / res["harness_epoch_s"]
    seconds = [round(e["seconds"], 2) for e in ref_eps]
    print(f"reference epochs: {seconds} s; speed-up {res['speedup']:.2f}x", flush=True)

    # step throughput, FLOPs and fraction of matmul peak
    x_all, y_all = to_tensor(Xtr, device), to_tensor(Ytr, device)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(8):
        idx = torch.randint(0, len(x_all), (args.batch,), generator=g).to(device)
        batches.append((x_all[idx], y_all[idx]))
    hnet = seeded_net(cfg, 0, device)
    hopt = torch.optim.Adam(hnet.parameters(), lr=2e-4)
    hstep = step_fn(hnet, hopt, precision, device)
    res["harness_step_s"] = time_steps(hstep, batches, device, args.steps)
    res["harness_samples_s"] = args.batch / res["harness_step_s"]
    res["step_flops"] = count_flops(hstep, *batches[0])
    torch.manual_seed(0)
    snet = UNet(cfg).to(device)
    sopt = torch.optim.Adam(snet.parameters(), lr=2e-4)
    sstep = lambda x, y: reference_loop.reference_step(snet, sopt, x.contiguous(), y.contiguous())  # noqa: E731
    res["reference_step_s"] = time_steps(sstep, batches, device, args.steps)
    res["reference_samples_s"] = args.batch / res["reference_step_s"]
    res["peak_fp32_flops"] = matmul_peak(device, torch.float32)
    res["peak_bf16_flops"] = matmul_peak(device, torch.bfloat16)
    peak_h = res["peak_bf16_flops"] if precision == "bf16" else res["peak_fp32_flops"]
    res["harness_frac_peak"] = res["step_flops"] / res["harness_step_s"] / peak_h
    res["reference_frac_peak"] = res["step_flops"] / res["reference_step_s"] / res["peak_fp32_flops"]
    print(
        f"step: harness {res['harness_step_s'] * 1e3:.1f} ms ({res['harness_samples_s']:.0f} tiles/s, "
        f"{res['harness_frac_peak']:.1%} of {precision} mm peak), reference {res['reference_step_s'] * 1e3:.1f} ms; "
        f"{res['step_flops'] / 1e9:.2f} GFLOP/step; peaks fp32 {res['peak_fp32_flops'] / 1e9:.0f}, "
        f"bf16 {res['peak_bf16_flops'] / 1e9:.0f} GFLOP/s",
        flush=True,
    )

    res["mem"] = {
        "harness_rss_mb": mem_h.rss_mb,
        "reference_rss_mb": mem_s.rss_mb,
        "harness_cuda_mb": mem_h.cuda_mb,
        "reference_cuda_mb": mem_s.cuda_mb,
        "process_rss_peak_mb": rss_peak_mb(),
        "rss_after_harness_mb": mem_h.rss_total_mb,
    }
    print(f"memory: {res['mem']}", flush=True)

    if not args.no_compile:
        res["compile"] = run_compile(args)
        print(f"compile: {res['compile']}", flush=True)

    table = report(res)
    print("\n" + table)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    if args.write:
        write_section("speed", table)
        print(f"written to {BENCH}")
    return 0


def report(r: dict) -> str:
    m = r["machine"]
    mem = r["mem"]
    gpu = r["mem"]["harness_cuda_mb"] is not None

    ref_all = ", ".join(f"{e['seconds']:.2f}" for e in r["reference_epochs"])

    def mb(v):
        return "n/a" if v is None else f"{v:.0f} MB"

    lines = [
        "## Per-epoch cost: harness vs the reference notebook's loop (`benchmarks/epoch_speed.py`)",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
        f"ISA {', '.join(m['isa']) or '-'}; "
        f"torch {m['torch']}, Python {m['python']}; device {m['device']}.  ",
        f"Data: embedded tiles, {r['n_train']} train / {r['n_val']} val (80/20, `data.split_indices` seed 0); "
        f"U-Net depth {r['config']['depth']}, {r['config']['upsample']}, base {r['config']['base']} "
        f"({r['n_params']:,} parameters); batch {r['batch']}; Adam 2e-4, BCE; same initial weights. "
        f"{r['epochs']} epochs of each loop" + (", the first (warm-up) excluded." if r["epochs"] > 1 else "."),
        "",
        "| | harness (`model.train.fit`) | reference loop (`benchmarks/reference_loop.py`) |",
        "|---|---|---|",
        f"| epoch, s | **{r['harness_epoch_s']:.2f}** (all: {', '.join(f'{e:.2f}' for e in r['harness_epochs_s'])}) "
        f"| **{r['reference_seconds']:.2f}** (all: {ref_all}) |",
        f"| of which | train steps + val inference + val count-MAE | train {r['reference_train_s']:.2f} + "
        f"train-set loss pass {r['reference_train_eval_s']:.2f} + val loss pass {r['reference_val_eval_s']:.2f} |",
        f"| **speed-up (reference / harness epoch)** | **{r['speedup']:.2f}x** | 1 |",
        f"| training step (batch {r['batch']}), ms | {r['harness_step_s'] * 1e3:.1f} ({r['precision']}, channels-last) "
        f"| {r['reference_step_s'] * 1e3:.1f} (fp32, NCHW) |",
        f"| training samples/s (step only) | {r['harness_samples_s']:.0f} | {r['reference_samples_s']:.0f} |",
        f"| step FLOPs (FlopCounterMode, fwd+bwd) | {r['step_flops'] / 1e9:.2f} GFLOP | same |",
        f"| fraction of matmul peak | {r['harness_frac_peak']:.1%} of {r['precision']} peak | "
        f"{r['reference_frac_peak']:.1%} of fp32 peak |",
        f"| peak RSS of the phase (VmHWM) | {mb(mem['harness_rss_mb'])} | {mb(mem['reference_rss_mb'])} |",
    ]
    if gpu:
        lines.append(f"| CUDA max_memory_allocated | {mb(mem['harness_cuda_mb'])} | {mb(mem['reference_cuda_mb'])} |")
    lines += [
        "",
        f"Matmul peak (square `torch.mm`, same run): fp32 {r['peak_fp32_flops'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {r['peak_bf16_flops'] / 1e9:.0f} GFLOP/s. Process peak RSS (getrusage): "
        f"{mem['process_rss_peak_mb']:.0f} MB (data set loaded once).",
    ]
    all_h = float(np.mean(r["harness_epochs_s"]))
    all_s = float(np.mean([e["seconds"] for e in r["reference_epochs"]]))
    lines += [
        f"With the warm-up epochs included the ratio is {all_s / all_h:.2f}x ({all_s:.2f} s / {all_h:.2f} s). "
        "The harness epoch includes its per-epoch validation count-MAE with the reference's counter "
        "(components, t=0.5, best offset); trials that sample the watershed counter pay a little more per epoch. "
        f"The reference loop's epoch includes the notebook's two loss passes, "
        f"{(r['reference_train_eval_s'] + r['reference_val_eval_s']) / r['reference_seconds']:.0%} of its time.",
        "",
    ]
    c = r.get("compile")
    if c is not None:
        if "error" in c:
            lines.append(f"torch.compile (harness step, cold inductor cache): failed or too slow: {c['error']}.")
        else:
            gain = c["eager_step_s"] / c["compiled_step_s"]
            break_even = c["build_s"] / max(c["eager_step_s"] - c["compiled_step_s"], 1e-9)
            lines.append(
                f"torch.compile (harness step, {c['precision']}, cold inductor cache, child process): build "
                f"{c['build_s']:.0f} s; step {c['compiled_step_s'] * 1e3:.1f} ms compiled vs "
                f"{c['eager_step_s'] * 1e3:.1f} ms eager ({gain:.2f}x). "
                + (
                    f"Break-even after ~{break_even:.0f} "
                    f"steps (~{break_even * r['batch'] / r['n_train']:.0f} "
                    f"epochs) per trial, since every trial builds a new net."
                    if c["compiled_step_s"] < c["eager_step_s"]
                    else "It does not pay: compiled is not faster."
                )
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
