"""`stresstest rank` on the bundled Monte Carlo preset (issue 28): the model at designed
inputs reproduces the scenario's own paths, the Shapley effects sum to 1 with the
estimator's variance check inside its interval, one input alone explains everything,
results do not depend on the chunking, and the command, file, report and bad inputs.
The estimators against closed forms are tests/test_gsa.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from stresstest import gsa
from stresstest.backends import make_backend
from stresstest.cli import main
from stresstest.kernels.paths import seed_key
from stresstest.latent import LatentModel
from stresstest.mc_paths import prepare
from stresstest.presets import DEFAULT_PORTFOLIO, resolve
from stresstest.progress import Progress
from stresstest.rank import RankSettings, grouped_inputs, run_rank
from stresstest.runner import load_inputs
from stresstest.validation import ConfigError

PRESET = resolve("montecarlo", None)


@pytest.fixture(scope="module")
def jax_backend():
    return make_backend("jax")


@pytest.fixture(scope="module")
def example(jax_backend):
    return load_inputs(resolve(None, DEFAULT_PORTFOLIO), PRESET)


def _model(pf, mc, be, chunk=0):
    inputs = grouped_inputs(mc)
    return LatentModel(pf, mc, be, "npv", inputs.map, chunk=chunk), inputs.law(mc)


@pytest.mark.parametrize("portfolio", ["example_v2"])  # version 2: contracts and segments too
def test_the_model_at_a_plain_design_is_the_scenarios_own_paths(portfolio, jax_backend):
    """Stream 1 with the scenario's key, unmixed, draws exactly the Monte Carlo run's paths:
    the NPVs of its first 300 paths, by the run's own machinery (mc_paths), agree to
    round-off (the mix adds a product by the identity)."""
    pf, mc = load_inputs(resolve(portfolio, DEFAULT_PORTFOLIO), PRESET)
    model, law = _model(pf, mc, jax_backend)
    rows = np.arange(300, dtype=np.int64)
    y = model(gsa.plain_design(law, seed_key(mc.seed), rows))
    run = prepare(pf, mc, jax_backend, 300)
    want = np.asarray(next(run.chunks(0, 300)).outputs["npv"])[:300]
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-9 * np.abs(want).max())


@pytest.fixture(scope="module")
def preset_rank(example, jax_backend):
    pf, mc = example
    s = RankSettings(permutations=1000, variance_samples=5000, sobol_samples=800, dgsm_samples=300)
    return run_rank(pf, mc, jax_backend, None, s, Progress(enabled=False))


def test_shapley_effects_on_the_preset_sum_to_one_within_their_interval(preset_rank):
    sh = preset_rank.shapley
    assert sh.effects.sum() == pytest.approx(1.0, abs=1e-12)  # a ratio estimator: by construction
    lo, hi = sh.total_ci
    assert lo <= 1.0 <= hi, (sh.total, sh.total_ci)  # the check: permutations' vs an independent variance
    assert np.all(sh.ci[:, 0] <= sh.effects + 1e-12) and np.all(sh.effects <= sh.ci[:, 1] + 1e-12)
    assert hi - lo < 0.5  # an interval that says something at this budget


def test_dgsm_bounds_the_total_index_of_each_independent_input(preset_rank):
    """Each event is independent of everything: where its DGSM applies (a continuous law
    of a parameter the flows move smoothly), it bounds the event's total Sobol index."""
    r = preset_rank
    names = r.inputs.names
    checked = 0
    for g, grp in enumerate(r.sobol.groups):
        if len(grp) == 1 and math.isfinite(r.dgsm.bound[grp[0]]):
            assert r.dgsm.ci[grp[0], 1] >= r.sobol.total_ci[g, 0], names[grp[0]]
            checked += 1
    assert checked >= 1  # next_gen_month (triangular, a ramp in the flows)
    i = names.index("event/client_loss_month")  # a discrete law: a derivative bounds nothing
    assert math.isnan(r.dgsm.bound[i])


def test_irr_gradient_is_the_implicit_functions_and_matches_the_solver(jax_backend):
    """DGSM of an IRR differentiates one Newton step from the solved root (irr_from_root),
    in reverse mode: its gradient in every flow equals central differences of the
    solver's own IRR (kernels.irr), at roots near 0 and far from it."""
    import jax
    import jax.numpy as jnp

    from stresstest.kernels.irr import annualise, solve_irr
    from stresstest.kernels.metrics import irr_from_root

    rng = np.random.default_rng(4)
    T = 36
    flows = np.concatenate([-rng.uniform(50, 150, (6, 1)), rng.uniform(-2, 9, (6, T))], axis=1)
    flows[:, -1] += 80.0
    root = np.asarray(annualise(solve_irr(flows)))
    assert np.all(np.isfinite(root))

    def total(f):
        return jnp.sum(irr_from_root(f, jax.lax.stop_gradient(annualise(solve_irr(f)))))

    g = np.asarray(jax.grad(total)(jnp.asarray(flows)))  # float64: jax_backend enables it
    assert g.dtype == np.float64
    h = 1e-4
    for t in (0, 1, T // 2, T):
        up, down = flows.copy(), flows.copy()
        up[:, t] += h
        down[:, t] -= h
        fd = (np.asarray(annualise(solve_irr(up))) - np.asarray(annualise(solve_irr(down)))) / (2 * h)
        np.testing.assert_allclose(g[:, t], fd, rtol=1e-5, atol=1e-10)


def test_irr_dgsm_runs_on_the_preset_within_memory(example, jax_backend):
    """DGSM of the portfolio IRR on the preset's paths: finite gradients in every input
    that moves the flows smoothly (a reverse pass through the solver's search asked for
    59 GB at 200 samples), and the values are the model's own IRRs."""
    pf, mc = example
    inputs = grouped_inputs(mc)
    model = LatentModel(pf, mc, jax_backend, "irr", inputs.map)
    rows = np.arange(40, dtype=np.int64)
    y, G = model.gradients(seed_key(mc.seed), rows)
    np.testing.assert_allclose(y, model(gsa.plain_design(inputs.law(mc), seed_key(mc.seed), rows)),
                               rtol=1e-12, atol=1e-12)
    prices = [i for i, name in enumerate(inputs.names) if name.startswith("price/")]
    assert np.all(np.isfinite(G[:, prices])) and np.all(G[:, prices].mean(axis=0) > 0)


def _scenario_with_one_price(tmp_path: Path, market: str) -> Path:
    """The preset with every volatility 0 but `market`'s price and, beside it, its energy
    price (an input of its own, independent of the price, that barely moves the NPV); no
    events."""
    doc = yaml.safe_load(Path(PRESET).read_text())
    sc = doc["scenario"]
    sc["price"] = {"volatility": 0.0, "by_market": {market: 0.35}}
    sc["utilization"] = {"ar": 0.8, "sigma_training": 0.0, "sigma_inference": 0.0}
    sc["energy"] = {"volatility": 0.0, "mean_reversion": 0.1, "by_market": {market: 0.3}}
    sc["events"] = []
    path = tmp_path / "one_price.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_one_markets_price_alone_explains_everything(tmp_path, jax_backend):
    """Every volatility 0 but one market's price (and its energy price, which barely
    matters): the price's effect is >= 0.99; the inputs that draw nothing are left out,
    named; the price's DGSM bound is at least its total index."""
    pf, mc = load_inputs(resolve(None, DEFAULT_PORTFOLIO), _scenario_with_one_price(tmp_path, "lulea-h200"))
    s = RankSettings(permutations=400, variance_samples=3000, sobol_samples=1000, dgsm_samples=300)
    r = run_rank(pf, mc, jax_backend, None, s, Progress(enabled=False))
    assert r.inputs.names == ("price/lulea-h200", "energy/lulea-h200")
    assert len(r.inputs.still) == len(mc.series) - 2
    assert r.shapley.effects[0] >= 0.99 and abs(r.shapley.effects[1]) <= 0.01
    assert r.shapley.total_ci[0] <= 1.0 <= r.shapley.total_ci[1]
    # price and energy are independent (no correlation between the kinds): Sobol indexes each
    assert r.sobol.groups == [(0,), (1,)]
    assert r.sobol.total_ci[0, 0] <= 1.0 and r.sobol.first_ci[0, 1] >= 0.99
    assert r.dgsm.ci[0, 1] >= r.sobol.total_ci[0, 0]


def test_results_do_not_depend_on_the_chunk_size(example, jax_backend):
    pf, mc = example
    perms = gsa.permutations(len(grouped_inputs(mc).names), 8, seed=3)
    got = []
    for chunk in (64, 256):
        model, law = _model(pf, mc, jax_backend, chunk=chunk)
        got.append(gsa.shapley_contributions(model, law, perms, seed=3, block=700))
    np.testing.assert_allclose(got[0], got[1], rtol=1e-9, atol=1e-9 * np.abs(got[1]).max())


def test_groups_merge_inputs(example):
    _, mc = example
    inputs = grouped_inputs(mc, (("h100 prices", ("price/ashburn-h100", "price/dallas-h100")),))
    assert inputs.names[0] == "h100 prices" and "price/dallas-h100" not in inputs.names
    assert inputs.map.series_input[0] == inputs.map.series_input[1] == 0
    assert len(inputs.names) == len(mc.series) + len(mc.events) - 1


SMALL = ["--permutations", "20", "--variance-samples", "300", "--sobol-samples", "100", "--dgsm-samples", "100"]


def test_the_command_writes_a_file_xarray_report_and_inspect_read(tmp_path):
    import xarray as xr

    out = tmp_path / "rank.h5"
    res = CliRunner().invoke(main, ["rank", "-o", str(out), "--json", *SMALL])
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    effects = [row["shapley"] for row in body["inputs"]]
    assert effects == sorted(effects, reverse=True) and sum(effects) == pytest.approx(1.0)
    ds = xr.open_dataset(out, engine="h5netcdf")
    assert list(ds["shapley"].dims) == ["input"] and ds.attrs["kind"] == "rank"
    top = body["inputs"][0]
    assert float(ds["shapley"].sel(input=top["input"])) == pytest.approx(top["shapley"])
    ds.close()
    res = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "drivers.png").stat().st_size > 0
    res = CliRunner().invoke(main, ["inspect", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ranking"][0]["input"] == top["input"]


@pytest.mark.parametrize("args, message", [
    (["-s", "default_grid"], "rank needs a Monte Carlo scenario"),
    (["--group", "x=price/ashburn-h100,price/nowhere"], "no input 'price/nowhere'"),
    (["--group", "x=price/ashburn-h100"], "two inputs or more"),
    (["--group", "a=price/ashburn-h100,price/dallas-h100", "--group", "b=price/dallas-h100,price/lulea-h200"],
     "already in group 'a'"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, args, message):
    out = tmp_path / "rank.h5"
    res = CliRunner().invoke(main, ["rank", "-o", str(out), *args, *SMALL])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_output_undefined_on_some_paths_is_named_and_no_file_written(tmp_path):
    """Equity IRR of a portfolio without debt is undefined on every path (docs/model.md)."""
    doc = yaml.safe_load(Path(resolve(None, DEFAULT_PORTFOLIO)).read_text())
    for c in doc["clusters"]:
        c["debt_fraction"] = 0.0
    doc.setdefault("defaults", {})["debt_fraction"] = 0.0
    pf_path = tmp_path / "no_debt.yaml"
    pf_path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "rank.h5"
    res = CliRunner().invoke(main, ["rank", str(pf_path), "-o", str(out), "--output", "equity_irr", *SMALL])
    assert res.exit_code == 2, res.output
    assert "equity_irr is not finite" in res.output and "--output npv" in res.output
    assert not out.exists()


@pytest.mark.parametrize("block, message", [
    ({"price": {"by_market": {"nowhere": 0.3}}}, "scenario.price.by_market.nowhere: no cluster has gpu_market"),
    ({"energy": {"by_market": {"lulea-h200": 7.0}}}, "scenario.energy.by_market.lulea-h200: must be in [0, 5]"),
])
def test_volatility_by_market_is_checked(tmp_path, example, block, message):
    pf, _ = example
    doc = yaml.safe_load(Path(PRESET).read_text())
    doc["scenario"].update(block)
    path = tmp_path / "mc.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_inputs(resolve(None, DEFAULT_PORTFOLIO), path)
    assert message in str(err.value)
