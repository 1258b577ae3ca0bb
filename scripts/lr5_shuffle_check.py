"""LR5's formulas against independent numpy computations (no flossrepro code).

For the linear rate network's fixed point z = w_out^T (I - W)^{-1} w_in (their setup: N = 1024,
zhat = 1, w_in entries O(1) with norm sqrt(N), w_out = m / N), print the loss after shuffling
W0 relative to the initial loss for
  - rank-one: dW = d a0 b0^T along the initial gradient (a0 = (I - W0)^{-T} w_out,
    b0 = (I - W0)^{-1} w_in), d solved so that z = zhat exactly;
  - GD: 200 steps of gradient descent on 0.5 (z - zhat)^2 at the fixed point, lr = 0.009 (1 - g^2)^2
    (their learning rate for zhat = 1),
against the formula g^4 (2 - g^2)^2; and, for the GD runs, the convergence time (lr x the first
step with loss < 5% of the initial) and ||dW||_F as ratios to g = 0 against (1 - g^2)^2 and
(1 - g^2).  Usage: python scripts/lr5_shuffle_check.py [--N 1024] [--gs 0 0.1 0.5 0.9]
"""
import argparse

import numpy as np


def network(rng, N, g):
    W0 = g * rng.normal(0, 1 / np.sqrt(N), (N, N))
    wio = rng.normal(0, 1, (N, 2))
    wio *= np.sqrt(N) / np.linalg.norm(wio, axis=0)
    return W0, wio[:, 0], wio[:, 1] / N


def z_of(W, win, wout):
    return wout @ np.linalg.solve(np.eye(len(win)) - W, win)


def shuffled(rng, W0):
    return W0.reshape(-1)[rng.permutation(W0.size)].reshape(W0.shape)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=1024)
    ap.add_argument("--gs", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.5, 0.6, 0.9])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    zhat, N = 1.0, args.N
    print(f"N={N}, zhat={zhat}: loss after shuffling W0 / initial loss")
    ref = None
    for g in args.gs:
        W0, win, wout = network(rng, N, g)
        M0 = np.linalg.inv(np.eye(N) - W0)
        a, b = M0.T @ wout, M0 @ win
        z0 = wout @ b
        L0 = 0.5 * (zhat - z0) ** 2
        u, v, c = wout @ M0 @ a, b @ M0 @ win, b @ M0 @ a   # Sherman-Morrison: z(d) = z0 + d u v / (1 - d c)
        d = (zhat - z0) / (u * v + (zhat - z0) * c)
        W0s = shuffled(rng, W0)
        r1 = 0.5 * (z_of(W0s + d * np.outer(a, b), win, wout) - zhat) ** 2 / L0
        W, lr, conv = W0.copy(), 0.009 * (1 - g ** 2) ** 2, None
        for step in range(200):
            M = np.linalg.inv(np.eye(N) - W)
            h = M @ win
            z = wout @ h
            if conv is None and 0.5 * (z - zhat) ** 2 < 0.05 * L0:
                conv = step
            W -= lr * (z - zhat) * np.outer(M.T @ wout, h)
        dW = W - W0
        gd = 0.5 * (z_of(W0s + dW, win, wout) - zhat) ** 2 / L0
        s = np.linalg.svd(dW, compute_uv=False)
        tconv, norm = lr * (conv if conv is not None else np.nan), np.linalg.norm(dW)
        if ref is None and g == 0:
            ref = (tconv, norm)
        line = (f"g={g}: shuffle rank-one {r1:.4g}, GD {gd:.4g}, formula {g ** 4 * (2 - g ** 2) ** 2:.4g} "
                f"(GD: final z {z_of(W, win, wout):.5f}, s2/s1 {s[1] / s[0]:.3f})")
        if ref is not None and g > 0:
            line += (f"; conv time / g=0 {tconv / ref[0]:.3g} vs {(1 - g ** 2) ** 2:.3g}, "
                     f"||dW|| / g=0 {norm / ref[1]:.3g} vs {1 - g ** 2:.3g}")
        print(line)

if __name__ == "__main__":
    main()
