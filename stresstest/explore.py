"""`stresstest explore RESULT.h5`: a result file in the browser, served on 127.0.0.1.

A Panel server (Bokeh's, with its widgets) on the loopback address only, on a free port
unless one is given, serving every script and style sheet itself: the page asks nothing
of the internet. Each browser session gets its own page built by the view of the file's
kind (`views`): explore_grid for grids, sensitivities and named scenarios, explore_mc
for Monte Carlo, explore_decide for the ranked drivers and the frontier of a Monte Carlo
scenario (`rank`, `optimize`), explore_curve for breakeven curves. The file is opened once and read a
slice at a time (explore_source), so a large grid opens at once.

Panel and Bokeh are the optional extra `.[explore]`: without them the command says how
to install them and starts nothing. The plots are Bokeh figures held in Panel panes
(rather than HoloViews objects): a slider's move replaces the data of the figure shown,
no figure is rebuilt, and one library fewer is imported at start.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .explore_source import Inputs, Source
from .fig_html import escape
from .fig_read import attr
from .validation import ConfigError

EXTRA = ("panel", "bokeh", "contourpy")  # what the views import (contourpy: the contours)
INSTALL = 'pip install -e ".[explore]"'
ADDRESS = "127.0.0.1"


def check_extra() -> None:
    """ConfigError naming the install command where the optional packages are missing."""
    missing = [m for m in EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError([f"explore: needs the optional package{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)}, not installed here: {INSTALL} (in a checkout), or "
                           "pip install \"stresstest[explore]\""])


# The view of each kind of result file: (module, function), the function taking a Source
# to its page. Imported only when a file of that kind is shown (view), after check_extra:
# they import Panel, and the Monte Carlo and decision views the report's figures
# (matplotlib), which a grid's first view does without.
VIEWS = {"grid": ("explore_grid", "view"), "sensitivities": ("explore_grid", "view"),
         "named": ("explore_grid", "view"), "montecarlo": ("explore_mc", "view"),
         "breakeven": ("explore_curve", "view"), "rank": ("explore_decide", "rank_view"),
         "optimize": ("explore_decide", "optimize_view")}


def view(kind: str):
    """The view function of a kind of result file (VIEWS), its module imported now."""
    import importlib

    module, name = VIEWS[kind]
    return getattr(importlib.import_module(f".{module}", __package__), name)


def open_source(path: Path, portfolio: str | None = None, scenario: str | None = None) -> Source:
    """The result file, checked: a kind explore shows, and the input files (where given)
    those it was run with. ConfigError before anything is served."""
    inputs = Inputs(portfolio, scenario)
    src = Source(Path(path), inputs)
    try:
        if src.kind not in VIEWS:
            raise ConfigError([f"{path}: a {src.kind} file, which explore does not show"])
        inputs.check(src.path, attr(src.f, "config_sha256"))
    except ConfigError:
        src.f.close()
        raise
    return src


def make_server(sources: dict[str, Source], port: int = 0):
    """A Panel server on 127.0.0.1:port (0: a free one) serving each source's page at its
    route ("/" for one source: give {"": src}); not started: call .start() and run its
    io_loop. OSError where the port is taken."""
    import panel as pn

    shown = {src.kind: view(src.kind) for src in sources.values()}

    def app(src: Source):
        return lambda: pn.Column(pn.pane.HTML(f"<h2>{escape(src.title())}</h2>"), shown[src.kind](src),
                                 sizing_mode="stretch_width")

    apps = {route: app(src) for route, src in sources.items()}
    panels = apps[""] if list(apps) == [""] else apps
    first = next(iter(sources.values()))
    return pn.serve(panels, port=port, address=ADDRESS, show=False, start=False, verbose=False,
                    title=f"stresstest explore: {first.path.name}")


def serve(path: Path, port: int = 0, open_browser: bool = True, portfolio: str | None = None,
          scenario: str | None = None, echo=print) -> None:
    """Serve RESULT until Ctrl-C: print its address (echo), open a browser on it unless
    open_browser is False. ConfigError, before anything starts, for a missing extra, a
    file explore does not show, input files that are not the run's, a port in use."""
    check_extra()
    src = open_source(path, portfolio, scenario)
    try:
        try:
            server = make_server({"": src}, port)
        except OSError as err:
            raise ConfigError([f"--port {port}: cannot listen on {ADDRESS}:{port} ({err.strerror or err})"]) from None
        server.start()
        url = f"http://{ADDRESS}:{server.port}/"
        echo(f"explore: {url}  (Ctrl-C to stop)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        try:
            server.io_loop.start()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    finally:
        src.f.close()
