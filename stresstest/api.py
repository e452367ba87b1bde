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
