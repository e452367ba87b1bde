"""Grid result files (MODEL.md, "Result file"), streamed chunk by chunk.

Layout: one dimension scale per axis (named as the axis, holding its values) and
one for `cluster` (the names, variable-length UTF-8), so that
`xarray.open_dataset(path, engine="h5netcdf")` gives labelled arrays. Portfolio
outputs have dims = the axes; per-cluster outputs (`cluster_<output>`) the axes
then `cluster`. A version 2 portfolio's files (one that carries items) add the scale
`industry` (its labels, items.industry_labels) and the outputs by industry
(outputs.INDUSTRY_VARIABLES): `revenue_by_industry` (axes, industry) and
`cluster_revenue_by_industry` (axes, cluster, industry); a version 1 file has neither.
Where its kernels carry them (output_groups), a version 2 file also holds the outputs of
the optimization programmes, `optimization_cost` (axes) and `cluster_optimization_cost`
(axes, cluster), and of the platform layer, `platform_npv` and `platform_revenue` (axes)
(outputs.GROUP_VARIABLES).
GridWriter is an h5io.AtomicFile: written under a temporary name in
the target folder and renamed when complete, so a killed run never leaves a file at
the output name. Whole HDF5 chunks are deflated by the writer's own threads
(_DirectChunks, _deflate_shuffled) and stored as they are.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .config import portfolio_from_dict
from .engine import sensitivity_items
from .h5io import AtomicFile, chunk_shape
from .kernels.params import OUTPUT_UNITS, OUTPUTS, PARAMS, PORTFOLIO_PARAMS
from .kernels.sensitivity import parameter_names
from .outputs import (AXIS_DIM, BASE_GROUP, CLUSTER_DIM, GROUP_VARIABLES, INDUSTRY_DIM, INDUSTRY_VARIABLES,
                      PARAMETER_DIM, PER_PARAMETER, SENSITIVITY_VARIABLES, expected_reason, output_name)

LONG_NAMES = {
    "npv": "net present value of project cash flows",
    "roi": "net gain over the horizon per dollar of capex",
    "irr": "internal rate of return of project cash flows (annual)",
    "payback_months": "months until cumulative cash flow turns non-negative",
    "equity_irr": "internal rate of return of equity cash flows (annual)",
    "min_dscr": "minimum debt service cover ratio",
    "revenue": "total revenue over months 1..T",
    "energy_cost": "total energy cost over months 1..T",
    "opex": "total operating cost over months 1..T",
    "ebitda": "total EBITDA over months 1..T",
}

# The long names of the label coordinates every file of a portfolio shares
LABEL_LONG_NAMES = {
    CLUSTER_DIM: "cluster name",
    INDUSTRY_DIM: "industry label of the contracts and segments (unlabelled: those without one)",
}


def industry_coordinate(portfolio) -> list[str] | None:
    """The `industry` labels of a portfolio's result files: items.industry_labels where
    the kernels carry its items (version 2: they return revenue by industry), None for
    a version 1 portfolio, whose files have no industry dimension."""
    return portfolio.industries if portfolio.itemised else None


def output_groups(portfolio) -> tuple[str, ...]:
    """The groups of outputs.GROUP_VARIABLES in a portfolio's result files: those whose
    arrays its kernels carry (Portfolio.groups), so whose outputs they return: the
    programmes' costs where a cluster has a programme (or a scenario moves one), the
    platform's NPV and revenue where the portfolio has a platform. () for version 1."""
    return tuple(g for g in GROUP_VARIABLES if g in portfolio.groups)


# Each named shock's coordinate: (units, long_name). A param axis takes its parameter's
# unit from the parameter table (a scale: "scale factor"); see axis_attrs.
SHOCK_ATTRS = {
    "utilization": ("absolute shift", "shift of utilization_training and utilization_inference "
                                      "(absolute points)"),
    "price": ("scale factor", "scale of on_demand_price (the market rent)"),
    "energy": ("scale factor", "scale of energy_price"),
    "obsolescence": ("months", "shift of next_gen_month (negative: earlier)"),
}


def axis_attrs(axis) -> dict[str, str]:
    """`units` and `long_name` of an axis's coordinate (a label axis: long_name only)."""
    shock, param = getattr(axis, "shock", None), getattr(axis, "param", None)
    if shock in SHOCK_ATTRS:
        units, long_name = SHOCK_ATTRS[shock]
        return {"units": units, "long_name": long_name}
    spec = PARAMS.get(param) or PORTFOLIO_PARAMS.get(param)
    if spec is None:
        return {"long_name": f"{axis.name} (labels)"}
    op = axis.spec.op
    units = "scale factor" if op == "scale" else spec.unit or "1"
    verb = {"scale": "scale of ", "shift": "shift of "}.get(op, "")
    where = f" (clusters: {', '.join(axis.clusters)})" if getattr(axis, "clusters", None) else ""
    return {"units": units, "long_name": f"{verb}{param}{where}"}


def flat_slabs(shape: tuple[int, ...], start: int, stop: int):
    """Split the flat C-order range [start, stop) of an array of `shape` into boxes.

    Yields (selection, box_shape, offset): `selection` indexes the array, `offset` is
    the position of the box's first element inside the range. At most 2*ndim - 1 boxes.
    """
    def rec(shape, a, b, prefix, offset):
        if a >= b:
            return
        if not shape:
            yield prefix, (), offset
            return
        inner = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        i0, r0 = divmod(a, inner)
        i1, r1 = divmod(b, inner)
        if i0 == i1:
            yield from rec(shape[1:], r0, r1, prefix + (i0,), offset)
            return
        if r0:
            yield from rec(shape[1:], r0, inner, prefix + (i0,), offset)
            offset += inner - r0
            i0 += 1
        if i1 > i0:
            rest = tuple(slice(None) for _ in shape[1:])
            yield prefix + (slice(i0, i1),) + rest, (i1 - i0,) + tuple(shape[1:]), offset
            offset += (i1 - i0) * inner
        if r1:
            yield from rec(shape[1:], 0, r1, prefix + (i1,), offset)

    yield from rec(tuple(shape), start, stop, (), 0)


def _deflate_shuffled(values: np.ndarray, level: int) -> bytes:
    """One HDF5 chunk as the shuffle + deflate filter pipeline stores it: the bytes
    regrouped by significance (byte 0 of every element, then byte 1, ...), then a zlib
    stream.

    The stream comes from ISA-L (the `isal` package) where it is installed: its level 2
    deflates several times faster than zlib's level 1, for files a little larger
    (benchmarks/README.md, "Measurements behind design choices in the code"). Any zlib
    inflates it, so readers see an ordinary gzip dataset. Without isal, zlib at `level`.
    """
    a = np.ascontiguousarray(values)
    shuffled = np.ascontiguousarray(a.view(np.uint8).reshape(-1, a.dtype.itemsize).T)
    try:
        from isal import isal_zlib
    except ImportError:
        import zlib

        return zlib.compress(shuffled, level)
    return isal_zlib.compress(shuffled, 2)


def _gaps(start: int, stop: int, covered: list[tuple[int, int]]):
    """The parts of [start, stop) outside the sorted, disjoint ranges `covered`."""
    at = start
    for a, b in covered:
        if a > at:
            yield at, a
        at = b
    if at < stop:
        yield at, stop


class _DirectChunks:
    """Where a dataset's HDF5 chunks fall in the flat grid, for writing whole chunks
    compressed by our own threads (HDF5 then stores the bytes as they are).

    chunk_shape gives chunks of 1 along the leading grid dimensions, `part` along
    dimension k and everything after it: in flat point order each chunk is one
    contiguous run of part * stride points. The last chunk of each run along dimension
    k is an edge chunk where part does not divide it: fewer points, which HDF5 stores
    padded to the full chunk (its in-bounds points first, in C order), so it is
    compressed here too, padded with zeros (readers never see the padding).
    """

    level = 1

    def __init__(self, grid_shape, k: int, part: int):
        self.grid_shape = grid_shape
        self.k, self.part = k, part
        self.stride = math.prod(grid_shape[k + 1:])  # points per step along dim k
        self.row = grid_shape[k] * self.stride  # points per index of the dims before k
        self.points = part * self.stride  # points per chunk
        self.extra_ndim = 0

    @classmethod
    def plan(cls, grid_shape, shape, chunks):
        """The plan for a dataset of `shape` (grid dims, then per-point dims) chunked as
        `chunks`, or None where its chunks are not whole runs of points."""
        if chunks is None or not grid_shape:
            return None
        g = len(grid_shape)
        if tuple(chunks[g:]) != tuple(shape[g:]):
            return None  # a chunk splits a point's values
        split = [d for d in range(g) if chunks[d] != 1]
        k = split[0] if split else g - 1
        if any(chunks[d] != grid_shape[d] for d in range(k + 1, g)):
            return None
        plan = cls(tuple(grid_shape), k, int(chunks[k]))
        plan.extra_ndim = len(shape) - g
        return plan

    def inside(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Whole, non-edge chunks lying inside the flat point range [start, stop)."""
        out = []
        size = self.points
        n_k = self.grid_shape[self.k]
        full = n_k // self.part  # chunks per row that are not edge chunks
        for r in range(start // self.row, (stop - 1) // self.row + 1):
            base = r * self.row
            lo = max(0, -(-(start - base) // size))
            hi = min(full, (stop - base) // size)
            out.extend((base + j * size, base + (j + 1) * size) for j in range(lo, hi))
            edge = base + full * size
            if edge < base + self.row and start <= edge and base + self.row <= stop:
                out.append((edge, base + self.row))
        return out

    def offset(self, point: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(point, self.grid_shape)) + (0,) * self.extra_ndim


class GridWriter(AtomicFile):
    """Write a grid's outputs chunk by chunk; `commit()` renames into place.

    industries: the `industry` coordinate (industry_coordinate) where the outputs hold
    revenue by industry (a version 2 portfolio), else None. groups: the groups of
    GROUP_VARIABLES the outputs hold (output_groups)."""

    def __init__(self, path, axes, cluster_names, attrs: dict, dtype=np.float64,
                 compression: str | None = "gzip", sensitivities: bool = False,
                 industries: list[str] | None = None, groups: tuple[str, ...] = ()):
        super().__init__(path)
        self.grid_shape = tuple(len(a.values) for a in axes)
        self.n_clusters = len(cluster_names)
        self.industries = None if industries is None else list(industries)
        self.variables = [v for g in groups for v in GROUP_VARIABLES[g]]
        self._direct: dict[str, _DirectChunks] = {}
        self._pool = None
        self.seconds = 0.0  # spent in write, flush and commit
        try:
            self._layout(axes, cluster_names, attrs, np.dtype(dtype), compression)
            if self.industries is not None:
                self._industry_layout(np.dtype(dtype), compression)
            self._group_layout(np.dtype(dtype), compression)
            if sensitivities:
                self._sensitivity_layout(axes, np.dtype(dtype), compression)
            for name, ds in self.datasets.items():  # what a NaN (or inf) means, for readers
                why = expected_reason(name)
                if why and "nonfinite_means" not in ds.attrs:  # _sensitivity_layout's may say more
                    ds.attrs["nonfinite_means"] = why
        except BaseException:
            self.abort()
            raise

    def _layout(self, axes, cluster_names, attrs, dtype, compression):
        f = self.f
        for key, value in attrs.items():
            f.attrs[key] = value
        scales = []
        for a in axes:
            if np.asarray(a.values).dtype.kind in "OUS":  # labels (named scenarios)
                scales.append(self._labels(a.name, [str(v) for v in a.values]))
                scales[-1].attrs.update(axis_attrs(a))
                continue
            ds = f.create_dataset(a.name, data=np.asarray(a.values, dtype=np.float64))
            ds.attrs.update(axis_attrs(a))
            ds.attrs["op"] = a.spec.op
            ds.attrs["targets"] = ",".join(a.spec.targets)
            ds.attrs["clusters"] = ",".join(a.clusters) if a.clusters else "all"
            if a.neutral is not None:
                ds.attrs["neutral"] = a.neutral
            ds.make_scale(a.name)
            scales.append(ds)
        self.scales = scales
        self.cluster_names = list(cluster_names)
        self.cluster_scale = self._labels(CLUSTER_DIM, cluster_names)
        self.datasets = {}
        for name in OUTPUTS:
            self._output(name, (), dtype, compression, OUTPUT_UNITS[name], LONG_NAMES[name])
            self._output(CLUSTER_DIM + "_" + name, (self.cluster_scale,), dtype, compression,
                         OUTPUT_UNITS[name], LONG_NAMES[name] + " (per cluster)")

    def _labels(self, name, labels, where=None):
        import h5py

        ds = (where or self.f).create_dataset(name, data=np.array(labels, dtype=object),
                                              dtype=h5py.string_dtype())
        ds.make_scale(name)
        if name in LABEL_LONG_NAMES:
            ds.attrs["long_name"] = LABEL_LONG_NAMES[name]
        return ds

    def _output(self, name, extra_scales, dtype, compression, units, long_name):
        shape = self.grid_shape + tuple(len(s) for s in extra_scales)
        kw = {}
        if shape and compression:
            kw = dict(chunks=chunk_shape(shape), compression=compression, shuffle=True)
            if compression == "gzip":
                kw["compression_opts"] = 1
        ds = self.f.create_dataset(name, shape=shape, dtype=dtype, fillvalue=np.nan, **kw)
        if compression == "gzip" and shape:
            plan = _DirectChunks.plan(self.grid_shape, shape, ds.chunks)
            if plan is not None:
                self._direct[name] = plan
        for i, s in enumerate(list(self.scales) + list(extra_scales)):
            ds.dims[i].attach_scale(s)
        ds.attrs["units"] = units
        ds.attrs["long_name"] = long_name
        self.datasets[name] = ds

    def _industry_layout(self, dtype, compression):
        """The `industry` coordinate and the outputs by industry (INDUSTRY_VARIABLES), laid
        out as the per-cluster outputs are: after the axes, `cluster` then `industry`."""
        scales = {CLUSTER_DIM: self.cluster_scale, INDUSTRY_DIM: self._labels(INDUSTRY_DIM, self.industries)}
        for name, dims, units, long_name in INDUSTRY_VARIABLES:
            self._output(name, tuple(scales[d] for d in dims), dtype, compression, units, long_name)

    def _group_layout(self, dtype, compression):
        """The outputs of the programmes and of the platform (GROUP_VARIABLES of the file's
        groups), laid out as the version 1 outputs are: the axes, then `cluster` if per cluster."""
        scales = {CLUSTER_DIM: self.cluster_scale}
        for name, dims, units, long_name in self.variables:
            self._output(name, tuple(scales[d] for d in dims), dtype, compression, units, long_name)

    def _sensitivity_layout(self, axes, dtype, compression):
        """The outputs of --sensitivities. The `parameter` coordinate is the portfolio's
        (engine.sensitivity_parameters, of the portfolio in the file's config): the
        cluster parameters, then with version 2 items their fields by item name, whose
        cells are NaN where a cluster lacks the item (the datasets' nonfinite_means),
        then the version 2 scalars but the whole months (NaN for an optimization field
        where a cluster runs no programme)."""
        items = self._sensitivity_items()
        scales = {PARAMETER_DIM: self._labels(PARAMETER_DIM, list(parameter_names(items))),
                  AXIS_DIM: self._labels(AXIS_DIM, [a.name for a in axes]),
                  CLUSTER_DIM: self.cluster_scale}
        if items is not None:
            scales[PARAMETER_DIM].attrs["long_name"] = (
                "cluster parameter, then item field as <kind>.<item>.<field> (<kind>.*.<field>: "
                "every item of the cluster at once)" + (
                    ", then version 2 field (capex_decline, optimization.<field>, platform.<field>: "
                    "the platform's in every cluster's row)" if items.scalars else ""))
        for name, dims, units, long_name in SENSITIVITY_VARIABLES:
            self._output(name, tuple(scales[d] for d in dims), dtype, compression, units, long_name)
            if items is not None and items.some_absent and name in PER_PARAMETER:
                self.datasets[name].attrs["nonfinite_means"] = expected_reason(name, absent=True)

    def _sensitivity_items(self):
        """The item columns of the portfolio in the file's config (engine.sensitivity_items),
        None for a version 1 portfolio or a file without a config."""
        config = self.f.attrs.get("config")
        if config is None:
            return None
        return sensitivity_items(portfolio_from_dict(json.loads(config)["portfolio"]))

    # Consecutive chunks are staged and written together: one HDF5 write costs about the
    # same for 1,000 points as for 100,000 (selection and chunk bookkeeping), so small
    # writes made the I/O, not the compression, the cost of a streamed grid. A staged
    # write stores the whole HDF5 chunks it holds and keeps each dataset's unfinished
    # last chunk for the next one: a chunk written in two parts would be compressed,
    # read back and compressed again by HDF5, under h5py's lock.
    STAGE_BYTES = 64 * 2**20

    @contextlib.contextmanager
    def _timed(self):
        """Adds the block's seconds to self.seconds."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0

    def write(self, start: int, stop: int, outputs: dict[str, np.ndarray]) -> None:
        """Store the outputs of the flat grid range [start, stop) (staged; see flush)."""
        with self._timed():
            self._write(start, stop, outputs)

    def _write(self, start: int, stop: int, outputs: dict[str, np.ndarray]) -> None:
        if getattr(self, "_stage_end", None) is not None and self._stage_end != start:
            self.flush()
        pending = self.__dict__.setdefault("_pending", {})
        for name in self.datasets:
            pending.setdefault(name, [start, []])[1].append(outputs[name][: stop - start])
        self._stage_end = stop
        self._last_bytes = sum(outputs[n][: stop - start].nbytes for n in self.datasets)
        self._staged = getattr(self, "_staged", 0) + self._last_bytes
        if self._staged >= self.STAGE_BYTES:
            self._write_staged(final=False)

    def flush(self) -> None:
        self._write_staged(final=True)

    def due(self) -> bool:
        """Whether writing another chunk like the last one fills the stage (and so
        compresses and stores it)."""
        return getattr(self, "_staged", 0) + getattr(self, "_last_bytes", 0) >= self.STAGE_BYTES

    def _write_staged(self, final: bool) -> None:
        stop = getattr(self, "_stage_end", None)
        if stop is None:
            return
        jobs = []  # (dataset, chunk offset, future of its compressed bytes)
        kept = {}
        for name, ds in self.datasets.items():
            first, parts = self._pending[name]
            values = parts[0] if len(parts) == 1 else np.concatenate(parts)
            plan = self._direct.get(name)
            whole = plan.inside(first, stop) if plan is not None else []
            end = stop
            if not final and plan is not None:
                tail = whole[-1][1] if whole else first
                if stop - tail < plan.points:  # the start of a chunk: finish it next time
                    end = tail
            if whole:
                pool = self._compressor()
                for p0, p1 in whole:
                    v = values[p0 - first:p1 - first]
                    if p1 - p0 < plan.points:  # an edge chunk, stored padded
                        v = np.concatenate([v, np.zeros((plan.points - (p1 - p0),) + v.shape[1:], v.dtype)])
                    jobs.append((ds, plan.offset(p0), pool.submit(_deflate_shuffled, v, plan.level)))
            for g0, g1 in _gaps(first, end, whole):
                for sel, box, off in flat_slabs(self.grid_shape, g0, g1):
                    v = values[g0 - first + off:g0 - first + off + math.prod(box)]
                    ds[sel] = v.reshape(box + v.shape[1:])
            if end < stop:
                kept[name] = [end, [values[end - first:]]]
        for ds, offset, fut in jobs:
            ds.id.write_direct_chunk(offset, fut.result())
        self._pending = kept
        self._staged = sum(p[1][0].nbytes for p in kept.values())
        if not kept:
            self._stage_end = None

    def _compressor(self):
        """Threads that deflate whole HDF5 chunks: zlib releases the GIL, so they run
        beside the computation, where HDF5's own filter would run under h5py's lock."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)),
                                            thread_name_prefix="stresstest-deflate")
        return self._pool

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def commit(self) -> Path:
        with self._timed():
            self.flush()
            self._close_pool()
            return super().commit()

    def abort(self) -> None:
        self._close_pool()
        super().abort()

    def write_base(self, values: dict[str, np.ndarray]) -> None:
        """The base case's outputs, in the group BASE_GROUP."""
        self.write_group(BASE_GROUP, values)

    def write_group(self, group: str, values: dict[str, np.ndarray]) -> None:
        """One output per dataset, labelled as at the root: per-cluster outputs (named
        cluster_<output>) get the group's own `cluster` coordinate, the outputs by
        industry its own `industry` coordinate too (those of GROUP_VARIABLES their dims,
        units and long names as at the root), so that
        `xarray.open_dataset(f, group=..., engine="h5netcdf")` reads them labelled."""
        g = self.f.create_group(group)
        scales = {CLUSTER_DIM: self._labels(CLUSTER_DIM, self.cluster_names, where=g)}
        laid_out = {name: rest for name, *rest in self.variables}  # labelled by their dims
        if self.industries is not None:
            scales[INDUSTRY_DIM] = self._labels(INDUSTRY_DIM, self.industries, where=g)
            laid_out |= {name: rest for name, *rest in INDUSTRY_VARIABLES}
        for name, v in values.items():
            ds = g.create_dataset(name, data=v)
            short = output_name(name)
            if name in laid_out:
                dims, units, long_name = laid_out[name]
                for i, d in enumerate(dims):
                    ds.dims[i].attach_scale(scales[d])
                ds.attrs["units"] = units
                ds.attrs["long_name"] = long_name
                continue
            if ds.ndim == 1 and name != short and ds.shape[0] == len(self.cluster_names):
                ds.dims[0].attach_scale(scales[CLUSTER_DIM])
            if short in OUTPUT_UNITS:
                ds.attrs["units"] = OUTPUT_UNITS[short]
                ds.attrs["long_name"] = LONG_NAMES[short] + (" (per cluster)" if name != short else "")
