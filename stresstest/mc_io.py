"""The HDF5 file of a Monte Carlo run (docs/model.md, "Monte Carlo result file").

Root (xarray.open_dataset(path, engine="h5netcdf")):
  coordinates  cluster (names), statistic (mean, std, stderr, min, max, p1, p5, p50,
               p95, p99, nonfinite_fraction), month (0..T), fan_quantile (0.05 .. 0.95),
               parameter (with --sensitivities)
  <output>            (statistic)            portfolio, for every output of MODEL.md
  cluster_<output>    (cluster, statistic)
  var_95, var_99, cvar_95, cvar_99 (+ cvar_*_stderr), prob_npv_negative (+ _stderr),
    (cvar_* and cvar_*_stderr carry the attribute tail_paths, the k paths the tail
    mean averages; with k < 2 the standard error is NaN and its `comment` says why)
  prob_irr_below_hurdle, prob_dscr_below_covenant (when the scenario gives them)
  cluster_var_95 ... (cluster), tail_contribution_95/99 (cluster)
  cumulative_cf_fan (month, fan_quantile), cumulative_cf_mean (month)
  grad_mean_npv, grad_cvar_95, grad_cvar_99 (cluster, parameter) and their
  *_discount_rate scalars, with --sensitivities
Group `paths` (--save-paths; xarray.open_dataset(path, group="paths", ...)):
  path (0..N-1), cluster; every output per path as in a grid file, dims (path[, cluster]),
  and cumulative_cf (path, month).
Written under a temporary name and renamed when complete.
"""

from __future__ import annotations


import numpy as np

from .grid_file import LONG_NAMES
from .h5io import AtomicFile, chunk_shape
from .kernels.params import OUTPUT_UNITS, OUTPUTS, PARAM_NAMES
from .outputs import FAN_QUANTILES, STATISTICS

RISK_UNITS = {"var": "USD", "cvar": "USD", "prob": "1", "tail": "USD"}


class MonteCarloWriter(AtomicFile):
    def __init__(self, path, pf, mc, attrs: dict, dtype=np.float64, compression="gzip",
                 save_paths: bool = False):
        super().__init__(path)
        self.pf, self.mc = pf, mc
        self.dtype = np.dtype(dtype)
        self.compression = compression
        try:
            for k, v in attrs.items():
                self.f.attrs[k] = v
            self.cluster = self._labels(self.f, "cluster", pf.cluster_names)
            self.paths = None
            if save_paths:
                self._paths_layout()
        except BaseException:
            self.abort()
            raise

    @staticmethod
    def _labels(g, name, labels):
        import h5py

        ds = g.create_dataset(name, data=np.array(labels, dtype=object), dtype=h5py.string_dtype())
        ds.make_scale(name)
        return ds

    @staticmethod
    def _scale(g, name, values):
        ds = g.create_dataset(name, data=np.asarray(values))
        ds.make_scale(name)
        return ds

    def _var(self, g, name, data, scales, units, long_name):
        ds = g.create_dataset(name, data=np.asarray(data, dtype=np.float64))
        for i, s in enumerate(scales):
            ds.dims[i].attach_scale(s)
        ds.attrs["units"] = units
        ds.attrs["long_name"] = long_name
        return ds

    # ------------------------------------------------------------ per path
    def _paths_layout(self):
        g = self.f.create_group("paths")
        N, T = self.mc.paths, self.pf.horizon_months
        path = g.create_dataset("path", data=np.arange(N, dtype=np.int64))
        path.make_scale("path")
        cl = self._labels(g, "cluster", self.pf.cluster_names)
        month = self._scale(g, "month", np.arange(T + 1, dtype=np.int64))
        self.paths = {}
        for name in OUTPUTS:
            for full, scales in ((name, (path,)), ("cluster_" + name, (path, cl))):
                self.paths[full] = self._stream(g, full, scales, OUTPUT_UNITS[name], LONG_NAMES[name])
        self.paths["cumulative_cf"] = self._stream(g, "cumulative_cf", (path, month), "USD",
                                                   "cumulative portfolio cash flow by month")

    def _stream(self, g, name, scales, units, long_name):
        shape = tuple(s.shape[0] for s in scales)
        kw = {}
        if self.compression:
            kw = dict(chunks=chunk_shape(shape), compression=self.compression, shuffle=True)
            if self.compression == "gzip":
                kw["compression_opts"] = 1
        ds = g.create_dataset(name, shape=shape, dtype=self.dtype, fillvalue=np.nan, **kw)
        for i, s in enumerate(scales):
            ds.dims[i].attach_scale(s)
        ds.attrs["units"] = units
        ds.attrs["long_name"] = long_name
        return ds

    def write_paths(self, start: int, stop: int, outputs: dict) -> None:
        for name, ds in self.paths.items():
            ds[start:stop] = outputs[name][: stop - start]

    # ------------------------------------------------------------ summaries
    def write_summary(self, summary, gradients: dict | None) -> None:

        f = self.f
        stat = self._labels(f, "statistic", list(STATISTICS))
        cl = self.cluster
        for name in OUTPUTS:
            table = summary.table(name)
            units, long = OUTPUT_UNITS[name], LONG_NAMES[name]
            self._var(f, name, table[0], (stat,), units, f"{long}: statistics over paths")
            self._var(f, "cluster_" + name, table[1:], (cl, stat), units,
                      f"{long} (per cluster): statistics over paths")
        risk = summary.risk()
        tails = {k: risk.pop(k) for k in list(risk) if k.endswith("_tail_paths")}
        for key, value in risk.items():
            kind = key.replace("cluster_", "").split("_")[0]
            units = RISK_UNITS.get(kind, "USD")
            scales = (cl,) if np.ndim(value) == 1 else ()
            ds = self._var(f, key, value, scales, units, _risk_long_name(key))
            if key.startswith("cvar_"):
                k = int(tails[key[:7] + "_tail_paths"])
                ds.attrs["tail_paths"] = k  # the k = ceil(q n) lowest paths the CVaR averages
                if key.endswith("_stderr") and k < 2:
                    ds.attrs["comment"] = (f"NaN: the {100 - int(key[5:7])} % tail holds {k} path"
                                           f"{'' if k == 1 else 's'}; its standard error needs the "
                                           "tail's spread, so at least 2 tail paths (more paths)")
        month = self._scale(f, "month", np.arange(self.pf.horizon_months + 1, dtype=np.int64))
        fq = self._scale(f, "fan_quantile", np.asarray(FAN_QUANTILES))
        self._var(f, "cumulative_cf_fan", summary.fan_table(), (month, fq), "USD",
                  "quantiles over paths of the cumulative portfolio cash flow by month")
        self._var(f, "cumulative_cf_mean", summary.fan_moments.mean, (month,), "USD",
                  "mean over paths of the cumulative portfolio cash flow by month")
        if gradients:
            par = self._labels(f, "parameter", list(PARAM_NAMES))
            for key, value in gradients.items():
                what = "mean NPV" if "mean" in key else key.split("_")[1].upper() + " " + key.split("_")[2]
                if key.endswith("discount_rate"):
                    self._var(f, key, value, (), "USD per unit of discount_rate",
                              f"pathwise derivative of the portfolio {what} with respect to discount_rate")
                else:
                    self._var(f, key, value, (cl, par), "USD per unit of the parameter",
                              f"pathwise derivative of the portfolio {what} with respect to each "
                              "cluster's parameter")



def _risk_long_name(key: str) -> str:
    scope = "each cluster's" if key.startswith("cluster_") else "the portfolio's"
    k = key.replace("cluster_", "")
    if k.startswith("var_"):
        return f"value at risk of {scope} NPV at {k[4:]} %: minus its {100 - int(k[4:6])} % quantile"
    if k.startswith("cvar_"):
        lvl = k[5:7]
        se = " (standard error)" if k.endswith("stderr") else ""
        return f"conditional value at risk of {scope} NPV at {lvl} %: minus its mean in the tail{se}"
    if k.startswith("tail_contribution_"):
        return (f"each cluster's mean NPV over the paths in the portfolio's {100 - int(k[-2:])} % "
                "lower tail")
    se = " (standard error)" if k.endswith("stderr") else ""
    what = {"prob_npv_negative": "NPV < 0", "prob_irr_below_hurdle": "IRR below the hurdle",
            "prob_dscr_below_covenant": "min DSCR below the covenant"}
    base = k.replace("_stderr", "")
    return f"probability over paths that {scope} {what.get(base, base)}{se}"
