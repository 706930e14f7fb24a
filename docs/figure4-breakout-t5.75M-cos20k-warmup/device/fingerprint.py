"""Hashes of a recording's actions, directions and episode table; and logits summary (compare CPU and GPU recordings)."""
import hashlib, json, sys
import h5py, numpy as np
try:
    import hdf5plugin  # noqa: F401
except ImportError:
    pass
with h5py.File(sys.argv[1], "r") as f:
    out = {"keys": sorted(f.keys())}
    for k in ("actions", "proj_dirs"):
        if k in f:
            out[k] = hashlib.sha256(np.ascontiguousarray(f[k][:]).tobytes()).hexdigest()[:16]
    if "episodes" in f:
        g = f["episodes"]
        out["episodes"] = {k: hashlib.sha256(np.ascontiguousarray(g[k][:]).tobytes()).hexdigest()[:16] for k in sorted(g.keys())} if isinstance(g, h5py.Group) else hashlib.sha256(np.ascontiguousarray(g[:]).tobytes()).hexdigest()[:16]
    lg = f["logits"][:]
    out["logits_sum"] = float(np.float64(lg).sum()); out["logits_first"] = lg[:3].tolist()
    out["grads_row0_sum"] = float(np.float64(f["proj_grads"][0]).sum())
    out["grads_row99999_sum"] = float(np.float64(f["proj_grads"][len(lg) - 1]).sum())
print(json.dumps(out, indent=1))
