"""The Python API for notebooks: a run returned as an xarray.Dataset, labelled like the file."""

from __future__ import annotations

import tempfile
from pathlib import Path


def run(portfolio: str | Path | None = None, scenario: str | Path | None = None, *, backend: str = "auto",
        dtype: str = "float64", chunk_size: int | None = None, sensitivities: bool = False,
        output: str | Path | None = None, overwrite: bool = False):
    """Evaluate a portfolio (file or preset name; default the bundled example) on a scenario
    (grid, Monte Carlo or named; default the bundled grid) and return an xarray.Dataset.

    The Dataset is what `xarray.open_dataset(file, engine="h5netcdf")` reads from the file
    `stresstest run` writes for the same inputs, loaded into memory; the run goes through
    that very file (kept at `output` when given, else a temporary one). An existing file
    at `output` is replaced only with overwrite=True; otherwise the run raises ConfigError
    before any work, as `stresstest run` without --overwrite refuses. Bad input raises
    stresstest.validation.ConfigError with the file, key and reason.

        import stresstest
        ds = stresstest.run("my_portfolio.yaml", "my_grid.yaml")
        ds["npv"].sel(price=0.8, method="nearest")
    """
    import xarray as xr

    from .presets import DEFAULT_PORTFOLIO, DEFAULT_SCENARIO, resolve
    from .runner import run_scenario

    pf = resolve(None if portfolio is None else str(portfolio), DEFAULT_PORTFOLIO)
    sc = resolve(None if scenario is None else str(scenario), DEFAULT_SCENARIO)
    with tempfile.TemporaryDirectory(prefix="stresstest-") as tmp:
        path = Path(output) if output is not None else Path(tmp) / "result.h5"
        run_scenario(pf, sc, path, backend=backend, dtype=dtype, chunk_size=chunk_size, progress=False,
                 sensitivities=sensitivities, overwrite=overwrite)
        return xr.load_dataset(path, engine="h5netcdf")


def rank(portfolio: str | Path | None = None, scenario: str | Path = "montecarlo", *, output: str = "npv",
         groups: dict[str, list[str]] | None = None, permutations: int = 10000, inner: int = 3,
         variance_samples: int = 20000, sobol_samples: int = 8000, dgsm_samples: int = 8000,
         seed: int | None = None, backend: str = "auto", output_file: str | Path | None = None,
         overwrite: bool = False):
    """Which uncertain input of a Monte Carlo scenario drives the spread of a portfolio
    output most (`stresstest rank`; docs/decisions.md): an xarray.Dataset over an `input`
    coordinate (Shapley effects with their 95 % intervals, DGSM bounds) and a `group`
    coordinate (Sobol indices of the groups independent of each other), as the file
    holds it (kept at `output_file` when given).

        ds = stresstest.api.rank("my_portfolio.yaml", "my_montecarlo.yaml")
        ds["shapley"].sortby(ds["shapley"], ascending=False)
    """
    import xarray as xr

    from .presets import DEFAULT_PORTFOLIO, resolve
    from .rank import RankSettings, rank_files

    settings = RankSettings(output=output, permutations=permutations, inner=inner,
                            variance_samples=variance_samples, sobol_samples=sobol_samples,
                            dgsm_samples=dgsm_samples, seed=seed,
                            groups=tuple((k, tuple(v)) for k, v in (groups or {}).items()))
    with tempfile.TemporaryDirectory(prefix="stresstest-") as tmp:
        path = Path(output_file) if output_file is not None else Path(tmp) / "rank.h5"
        rank_files(resolve(None if portfolio is None else str(portfolio), DEFAULT_PORTFOLIO),
                   resolve(str(scenario), None), path, settings=settings, backend=backend,
                   overwrite=overwrite or output_file is None, progress=False)
        return xr.load_dataset(path, engine="h5netcdf")


def optimize(portfolio: str | Path | None = None, scenario: str | Path = "montecarlo", *, vary,
             objective: str = "mean_npv", constraints=(), frontier: int | None = None, paths: int | None = None,
             starts: int = 1, backend: str = "auto", output: str | Path | None = None, overwrite: bool = False):
    """Which mix is best within tail-risk limits (`stresstest optimize`; docs/decisions.md):
    an xarray.Dataset over a `param` coordinate (bounds, current value, optimum), the
    figures of the optimum and of the current mix in-sample and on fresh paths (`sample`,
    `metric`), the constraints, and with `frontier` the frontier (`frontier_point`), as
    the file holds it (kept at `output` when given). `vary`: "PARAM[@CLUSTER]=LO..HI"
    strings; `constraints`: "NAME<=LIMIT" strings. ds.attrs["feasible"] is 0 where no mix
    in the bounds meets them.

        ds = stresstest.api.optimize(vary=["reserved_share=0.2..1"], constraints=["cvar_95<=60e6"])
        ds["optimum"].to_series()
    """
    import xarray as xr

    from .optimize import optimize_files
    from .presets import DEFAULT_PORTFOLIO, resolve

    with tempfile.TemporaryDirectory(prefix="stresstest-") as tmp:
        path = Path(output) if output is not None else Path(tmp) / "optimize.h5"
        optimize_files(resolve(None if portfolio is None else str(portfolio), DEFAULT_PORTFOLIO),
                       resolve(str(scenario), None), path, varies=[vary] if isinstance(vary, str) else list(vary),
                       objective=objective, constraints=[constraints] if isinstance(constraints, str)
                       else list(constraints), frontier=frontier, paths=paths, starts=starts, backend=backend,
                       overwrite=overwrite or output is None)
        return xr.load_dataset(path, engine="h5netcdf")
