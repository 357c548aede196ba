"""GPU ratio table: fastconv kernel families beside cuDNN (torch, fp32, TF32 off), CUDA-event timed.

Every fastconv result is validated against torch's before it is timed (relative L2 error; a
mismatch is printed in the table and makes the exit status 1). Prints, for the benchmarks/shapes.py conv
shapes x 3 passes: fastconv-cupy ms, fastconv-numba ms, cuDNN ms and cuDNN/fastconv-cupy; ReLU
and 2x2 max/avg pooling on 64x64x56x56 in GB/s for each family beside torch and a device-to-device
copy; the geometric mean of cuDNN/fastconv over the 18 conv rows; and whole training steps (LeNet,
DCGAN, batch 128) in images/s beside PyTorch eager on the same card. Times are medians over --reps calls after
--warmup calls; each call is timed on its own, Python launch cost included.

    python benchmarks/gpu_table.py [--reps 30] [--warmup 5] [--skip-steps]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapes import CONV_SHAPES, ELEMENTWISE_SHAPE  # noqa: E402

import fastconv  # noqa: E402
from fastconv import ops  # noqa: E402
from fastconv.testing import rel_error  # noqa: E402

# fastconv (fp32) against torch run in float64 on the GPU; REDUCTION_TOL since the weight
# gradients sum up to 2e5 products. (cuDNN's own fp32 results are not the oracle: with
# benchmark=True it may pick FFT/Winograd algorithms that are off by ~1e-3.)
VALIDATE_TOL = 1e-4


def median_ms(fn, reps, warmup):
    import cupy as cp
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b))
    return float(np.median(times))


def families():
    from fastconv.check import families as f
    return f()


def conv_rows(args, torch, cp, fams):
    import torch.nn.functional as F
    rows, bad = [], 0
    rng = np.random.default_rng(0)
    for name, (n, c, h, w, k, r, s, st, pd) in CONV_SHAPES.items():
        x = cp.asarray(rng.standard_normal((n, c, h, w), dtype=np.float32))
        wt = cp.asarray(rng.standard_normal((k, c, r, s), dtype=np.float32) * 0.1)
        b = cp.asarray(rng.standard_normal((k,), dtype=np.float32))
        tx, tw, tb = (torch.from_dlpack(a) for a in (x, wt, b))
        ty = F.conv2d(tx, tw, tb, st, pd)
        dy = cp.asarray(rng.standard_normal(tuple(ty.shape), dtype=np.float32))
        tdy = torch.from_dlpack(dy)
        passes = {
            "forward": (lambda fam: ops.conv2d_forward(x, wt, b, st, pd, kernels=fam),
                        lambda: F.conv2d(tx, tw, tb, st, pd)),
            "backward_data": (lambda fam: ops.conv2d_backward_data(dy, wt, x.shape, st, pd, kernels=fam),
                              lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, st, pd)),
            "backward_weight": (lambda fam: ops.conv2d_backward_weight(dy, x, wt.shape, st, pd, kernels=fam),
                                lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, st, pd)),
        }
        dx_, dw_, db_, ddy = (torch.from_dlpack(a).double() for a in (x, wt, b, dy))
        refs = {"forward": lambda: F.conv2d(dx_, dw_, db_, st, pd),
                "backward_data": lambda: torch.nn.grad.conv2d_input(dx_.shape, dw_, ddy, st, pd),
                "backward_weight": lambda: torch.nn.grad.conv2d_weight(dx_, dw_.shape, ddy, st, pd)}
        from fastconv.backends.cuda import config as cuda_config
        for ps, (fc, tc) in passes.items():
            ref = cp.from_dlpack(refs[ps]())
            t_ref = median_ms(tc, args.reps, args.warmup)
            res = {}
            for fam in fams:
                err = rel_error(fc(fam), ref)
                ok = err <= VALIDATE_TOL
                bad += not ok
                res[fam] = (median_ms(lambda: fc(fam), args.reps, args.warmup), ok, err)
            tiles = {}
            for tile in cuda_config.CONV_TILES:  # every v2 tile forced, for tuning the heuristic
                with fastconv.using(conv_tile=tile):
                    ok = rel_error(fc("cupy"), ref) <= VALIDATE_TOL
                    bad += not ok
                    tiles[tile] = (median_ms(lambda: fc("cupy"), args.reps, args.warmup), ok)
            rows.append((name, ps, res, t_ref, tiles))
    return rows, bad


def bandwidth_rows(args, torch, cp, fams):
    """ReLU and 2x2 pooling rows for each kernel family (both families have their own kernels for
    these ops), each beside torch, plus the device-to-device copy (the ceiling)."""
    import torch.nn.functional as F
    rng = np.random.default_rng(1)
    shape = ELEMENTWISE_SHAPE
    n = int(np.prod(shape))
    x = cp.asarray(rng.standard_normal(shape, dtype=np.float32))
    dyq = cp.asarray(rng.standard_normal((shape[0], shape[1], shape[2] // 2, shape[3] // 2), dtype=np.float32))
    tx, tdyq = torch.from_dlpack(x), torch.from_dlpack(dyq)
    xc = cp.empty_like(x)
    y = ops.relu_forward(x)
    dy = cp.asarray(rng.standard_normal(shape, dtype=np.float32))
    ty, tdy = torch.from_dlpack(y), torch.from_dlpack(dy)
    _, am = ops.max_pool2d_forward(x, 2)
    tmax, tidx = F.max_pool2d(tx, 2, return_indices=True)
    f4 = 4
    rows, bad = [], 0
    # (name, bytes moved, fastconv call taking the family, torch call)
    cases = [
        ("relu forward", 2 * n * f4, lambda fam: ops.relu_forward(x, kernels=fam), lambda: torch.relu(tx)),
        ("relu backward", 3 * n * f4, lambda fam: ops.relu_backward(dy, y, kernels=fam),
         lambda: torch.ops.aten.threshold_backward(tdy, ty, 0.0)),
        ("maxpool2 forward", n * f4 + n // 4 * 8, lambda fam: ops.max_pool2d_forward(x, 2, kernels=fam)[0],
         lambda: F.max_pool2d(tx, 2, return_indices=True)[0]),
        ("maxpool2 backward", n // 4 * 8 + n * f4,
         lambda fam: ops.max_pool2d_backward(dyq, am, shape, 2, kernels=fam),
         lambda: torch.ops.aten.max_pool2d_with_indices_backward(tdyq, tx, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                                 tidx)),
        ("avgpool2 forward", n * f4 + n // 4 * f4, lambda fam: ops.avg_pool2d_forward(x, 2, kernels=fam),
         lambda: F.avg_pool2d(tx, 2)),
        ("avgpool2 backward", n // 4 * f4 + n * f4, lambda fam: ops.avg_pool2d_backward(dyq, shape, 2, kernels=fam),
         lambda: torch.ops.aten.avg_pool2d_backward(tdyq, tx, [2, 2], [2, 2], [0, 0], False, True, None)),
    ]

    def copy():
        cp.cuda.runtime.memcpyAsync(xc.data.ptr, x.data.ptr, n * f4, cp.cuda.runtime.memcpyDeviceToDevice,
                                    cp.cuda.get_current_stream().ptr)
        return xc
    t_copy = median_ms(copy, args.reps, args.warmup)
    t_clone = median_ms(lambda: tx.clone(), args.reps, args.warmup)
    copy_ok = bool((copy() == x).all())
    bad += not copy_ok
    rows.append(("memcpy D2D (ceiling)", "-", 2 * n * f4, t_copy, t_clone, copy_ok))
    for name, nbytes, fc, tc in cases:
        ref = cp.from_dlpack(tc())
        t_tc = median_ms(tc, args.reps, args.warmup)
        for fam in fams:
            err = rel_error(fc(fam), ref)
            ok = err <= VALIDATE_TOL
            bad += not ok
            t_fc = median_ms(lambda: fc(fam), args.reps, args.warmup)
            rows.append((name, fam, nbytes, t_fc, t_tc, ok))
    return rows, bad


def _torch_dcgan(torch):
    tnn = torch.nn
    G = tnn.Sequential(tnn.Linear(100, 128 * 49, bias=False), tnn.BatchNorm1d(128 * 49), tnn.ReLU(),
                       tnn.Unflatten(1, (128, 7, 7)), tnn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),
                       tnn.BatchNorm2d(64), tnn.ReLU(), tnn.ConvTranspose2d(64, 1, 4, 2, 1), tnn.Tanh())
    D = tnn.Sequential(tnn.Conv2d(1, 64, 4, 2, 1), tnn.LeakyReLU(0.2), tnn.Conv2d(64, 128, 4, 2, 1, bias=False),
                       tnn.BatchNorm2d(128), tnn.LeakyReLU(0.2), tnn.Flatten(), tnn.Linear(128 * 49, 1))
    return G.cuda(), D.cuda()


def step_rows(args, torch, cp, fams):
    from shapes import lenet, torch_lenet

    from fastconv import nn, optim
    from fastconv.train.gan import build_dcgan
    B, rows = 128, []
    rng = np.random.default_rng(2)
    xs = cp.asarray(rng.standard_normal((B, 1, 28, 28), dtype=np.float32))
    labels = cp.asarray(rng.integers(0, 10, size=B))
    z = cp.asarray(rng.standard_normal((B, 100), dtype=np.float32))
    ones = cp.ones((B, 1), dtype=cp.float32)
    zeros = cp.zeros((B, 1), dtype=cp.float32)
    for fam in fams:
        m = lenet(np.random.default_rng(0)).to("cuda", kernels=fam)
        opt = optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        lf = nn.CrossEntropyLoss(kernels=fam)

        def lenet_step():
            opt.zero_grad()
            lf.forward(m.forward(xs), labels)
            m.backward(lf.backward())
            opt.step()
        rows.append((f"LeNet fastconv-{fam}", B / median_ms(lenet_step, args.reps, args.warmup) * 1e3))
        G, D = build_dcgan(rng=np.random.default_rng(0))
        G.to("cuda", kernels=fam)
        D.to("cuda", kernels=fam)
        oG = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        oD = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        bce = nn.BCEWithLogitsLoss(kernels=fam)

        def dcgan_step():
            # (1) update D: real batch labelled 1, fake batch labelled 0
            oD.zero_grad()
            bce.forward(D.forward(xs), ones)
            D.backward(bce.backward())
            fake = G.forward(z)
            bce.forward(D.forward(fake), zeros)
            D.backward(bce.backward())
            oD.step()
            # (2) update G: fake batch labelled 1 through D
            oG.zero_grad()
            bce.forward(D.forward(fake), ones)
            G.backward(D.backward(bce.backward()))
            oG.step()
        rows.append((f"DCGAN fastconv-{fam}", B / median_ms(dcgan_step, args.reps, args.warmup) * 1e3))
    tm = torch_lenet().cuda()
    topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_dlpack(xs), torch.from_dlpack(labels)

    def t_lenet():
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tm(tx), ty).backward()
        topt.step()
    rows.append(("LeNet PyTorch eager", B / median_ms(t_lenet, args.reps, args.warmup) * 1e3))
    tG, tD = _torch_dcgan(torch)
    toG = torch.optim.Adam(tG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    toD = torch.optim.Adam(tD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    tz, t1, t0 = torch.from_dlpack(z), torch.from_dlpack(ones), torch.from_dlpack(zeros)
    bce_t = torch.nn.functional.binary_cross_entropy_with_logits

    def t_dcgan():
        toD.zero_grad()
        bce_t(tD(tx), t1).backward()
        fake = tG(tz)
        bce_t(tD(fake.detach()), t0).backward()
        toD.step()
        toG.zero_grad()
        bce_t(tD(fake), t1).backward()
        toG.step()
    rows.append(("DCGAN PyTorch eager", B / median_ms(t_dcgan, args.reps, args.warmup) * 1e3))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--skip-steps", action="store_true", help="skip the whole-training-step rows")
    args = ap.parse_args(argv)
    import cupy as cp
    import torch
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    props = cp.cuda.runtime.getDeviceProperties(0)
    card = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    fams = families()
    print(f"card: {card}; torch {torch.__version__} cuDNN {torch.backends.cudnn.version()} (TF32 off); "
          f"families: {', '.join(fams)}; median of {args.reps} after {args.warmup} warm-up calls")

    rows, bad = conv_rows(args, torch, cp, fams)
    hdr = f"{'shape':<13}{'pass':<17}" + "".join(f"{'fc-' + f + ' ms':>14}" for f in ("cupy", "numba")) \
        + f"{'cuDNN ms':>10}{'cuDNN/cupy':>12}  check"
    print("\n" + hdr)
    ratios = []
    for name, ps, res, t_ref, _ in rows:
        cells = "".join(f"{res[f][0]:>14.4f}" if f in res else f"{'-':>14}" for f in ("cupy", "numba"))
        ratio = t_ref / res["cupy"][0]
        ratios.append(ratio)
        status = "ok" if all(v[1] for v in res.values()) else \
            "MISMATCH " + " ".join(f"{f}:{v[2]:.1e}" for f, v in res.items() if not v[1])
        print(f"{name:<13}{ps:<17}{cells}{t_ref:>10.4f}{ratio:>12.3f}  {status}")
    gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"geometric mean cuDNN/fastconv-cupy over {len(ratios)} conv rows: {gm:.3f} (target >= 0.85)")
    from fastconv.backends.cuda import config as cuda_config
    tnames = list(cuda_config.CONV_TILES)
    print(f"\n{'v2 tile forced (cupy)':<30}" + "".join(f"{t + ' ms':>14}" for t in tnames) + "  auto tile")
    for name, ps, res, t_ref, tiles in rows:
        x_shape = CONV_SHAPES[name]
        n, c, h, w, k, r, s_, st, pd = x_shape
        p_ = ops.conv_out_size(h, r, st, pd, 1)
        m, cols = {"forward": (k, n * p_ * p_), "backward_data": (c, n * h * w),
                   "backward_weight": (k, c * r * s_)}[ps]
        auto = cuda_config.conv_tile(m, cols, cp.cuda.Device().attributes["MultiProcessorCount"])
        cells = "".join(f"{tiles[t][0]:>14.4f}" + ("" if tiles[t][1] else "!") for t in tnames)
        print(f"{name + ' ' + ps:<30}{cells}  {auto}")

    brow, bbad = bandwidth_rows(args, torch, cp, fams)
    bad += bbad
    # the ceiling is the faster of the two device copies measured (cudaMemcpy D2D, torch clone);
    # on the copy row "fc" is the cudaMemcpy and "torch" the clone
    copy_gbs = brow[0][2] / min(brow[0][3], brow[0][4]) / 1e6
    print(f"\n{'op (64x64x56x56)':<20}{'family':<8}{'fc ms':>9}{'fc GB/s':>10}{'torch ms':>10}{'torch GB/s':>11}"
          f"{'fc/copy':>10}  check")
    for name, fam, nbytes, t_fc, t_tc, ok in brow:
        gbs = nbytes / t_fc / 1e6
        print(f"{name:<20}{fam:<8}{t_fc:>9.4f}{gbs:>10.0f}{t_tc:>10.4f}{nbytes / t_tc / 1e6:>11.0f}"
              f"{gbs / copy_gbs:>10.2f}  {'ok' if ok else 'MISMATCH'}")

    if not args.skip_steps:
        try:
            srows = step_rows(args, torch, cp, fams)
            print(f"\n{'training step, batch 128':<28}{'images/s':>12}")
            for name, ips in srows:
                print(f"{name:<28}{ips:>12.0f}")
        except Exception as e:  # report and go on: the kernel rows above stand on their own
            print(f"\ntraining steps: failed with {type(e).__name__}: {e}")
            bad += 1
    print(f"\n{bad} validation failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
