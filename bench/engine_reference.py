"""The Python side of the engine benchmarks: writes the shared inputs, then
times the tools labs use today on them, one workload per process.

  python bench/engine_reference.py prepare DIR
  python bench/engine_reference.py WORKLOAD DIR   (matmul, rsa_bootstrap, ridge, ridge_sklearn, pls, cka)
"""
import json
import resource
import sys
import time

import numpy as np


def save(dir_, name, arr):
    np.save(f"{dir_}/{name}.npy", np.ascontiguousarray(arr, dtype=np.float64))


def prepare(d):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 1000))
    save(d, "rsa_a", x)
    save(d, "rsa_b", x[:, :800] + rng.standard_normal((500, 800)))
    xr = rng.standard_normal((2000, 4096))
    save(d, "ridge_x", xr)
    save(d, "ridge_y", xr[:, :300] @ rng.standard_normal((300, 500)) * 0.05 + rng.standard_normal((2000, 500)))
    yp = xr[:, :300] @ rng.standard_normal((300, 200)) * 0.05 + rng.standard_normal((2000, 200))
    save(d, "pls_y", yp)
    from sklearn.model_selection import ShuffleSplit
    splits = [{"train": sorted(tr.tolist()), "test": sorted(te.tolist())}
              for tr, te in ShuffleSplit(10, test_size=0.1, random_state=0).split(xr)]
    with open(f"{d}/pls_splits.json", "w") as f:
        json.dump(splits, f)
    xc = rng.standard_normal((5000, 4096))
    save(d, "cka_x", xc)
    save(d, "cka_y", xc[:, :1000] + rng.standard_normal((5000, 1000)))


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def run(workload, d):
    load = lambda n: np.load(f"{d}/{n}.npy")
    t0 = time.perf_counter()
    out = {}
    if workload == "matmul":
        for dt in (np.float64, np.float32):
            a = np.random.default_rng(0).standard_normal((4096, 4096)).astype(dt)
            a @ a
            t = time.perf_counter()
            for _ in range(3):
                a @ a
            out[f"{np.dtype(dt).name}_gflops"] = 3 * 2 * 4096 ** 3 / (time.perf_counter() - t) / 1e9
    elif workload == "rsa_bootstrap":
        import rsatoolbox
        a, b = load("rsa_a"), load("rsa_b")
        ra = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(a), method="correlation")
        rb = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(b), method="correlation")
        out["value"] = float(rsatoolbox.rdm.compare(ra, rb, method="rho-a")[0, 0])
        ra.pattern_descriptors["index"] = list(range(500))
        rb.pattern_descriptors["index"] = list(range(500))
        rng = np.random.default_rng(0)
        vals = []
        for _ in range(1000):
            idx = rng.integers(0, 500, 500)
            vals.append(rsatoolbox.rdm.compare(ra.subsample_pattern("index", idx), rb.subsample_pattern("index", idx), method="rho-a")[0, 0])
        out["ci"] = [float(np.nanpercentile(vals, 2.5)), float(np.nanpercentile(vals, 97.5))]
    elif workload == "ridge":
        from himalaya.ridge import RidgeCV
        from sklearn.model_selection import KFold
        x, y = load("ridge_x"), load("ridge_y")
        alphas = np.logspace(-2, 6, 20)
        meds = []
        for tr, te in KFold(5, shuffle=True, random_state=0).split(x):
            m = RidgeCV(alphas=alphas, cv=5, fit_intercept=True).fit(x[tr], y[tr])
            pred = m.predict(x[te])
            pc, tc = pred - pred.mean(0), y[te] - y[te].mean(0)
            meds.append(np.median((pc * tc).sum(0) / np.sqrt((pc ** 2).sum(0) * (tc ** 2).sum(0))))
        out["value"] = float(np.mean(meds))
    elif workload == "ridge_sklearn":
        from sklearn.linear_model import RidgeCV
        from sklearn.model_selection import KFold
        x, y = load("ridge_x"), load("ridge_y")
        meds = []
        for tr, te in KFold(5, shuffle=True, random_state=0).split(x):
            pred = RidgeCV(alphas=np.logspace(-2, 6, 20)).fit(x[tr], y[tr]).predict(x[te])
            pc, tc = pred - pred.mean(0), y[te] - y[te].mean(0)
            meds.append(np.median((pc * tc).sum(0) / np.sqrt((pc ** 2).sum(0) * (tc ** 2).sum(0))))
        out["value"] = float(np.mean(meds))
    elif workload == "pls":
        from sklearn.cross_decomposition import PLSRegression
        x, y = load("ridge_x"), load("pls_y")
        meds = []
        for s in json.load(open(f"{d}/pls_splits.json")):
            tr, te = np.array(s["train"]), np.array(s["test"])
            pred = PLSRegression(n_components=25, scale=False).fit(x[tr], y[tr]).predict(x[te])
            pc, tc = pred - pred.mean(0), y[te] - y[te].mean(0)
            meds.append(np.median((pc * tc).sum(0) / np.sqrt((pc ** 2).sum(0) * (tc ** 2).sum(0))))
        out["value"] = float(np.mean(meds))
    elif workload == "cka":
        x, y = load("cka_x"), load("cka_y")
        t = time.perf_counter()
        xc, yc = x - x.mean(0), y - y.mean(0)
        xty, xtx, yty = np.linalg.norm(yc.T @ xc) ** 2, np.linalg.norm(xc.T @ xc), np.linalg.norm(yc.T @ yc)
        out["linear"] = float(xty / (xtx * yty))
        n = len(x)
        sx, sy = (xc ** 2).sum(1), (yc ** 2).sum(1)
        nx, ny = sx.sum(), sy.sum()
        h = lambda dot, a, b, na, nb: dot - n / (n - 2) * a.dot(b) + na * nb / ((n - 1) * (n - 2))
        out["unbiased"] = float(h(xty, sx, sy, nx, ny) / np.sqrt(h(xtx ** 2, sx, sx, nx, nx) * h(yty ** 2, sy, sy, ny, ny)))
        out["compute_s"] = time.perf_counter() - t
    out["workload"] = workload
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mib"] = peak_mib()
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    else:
        run(sys.argv[1], sys.argv[2])
