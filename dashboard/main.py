"""Entry point of ``panel serve dashboard [--args --project FILE]`` (see ``dashboard.app``)."""

import sys

import panel as pn

from dashboard.app import App, layout_arg, resolve_project

pn.extension("tabulator", notifications=True)
App(resolve_project(sys.argv[1:]), layout=layout_arg(sys.argv[1:])).servable(title="Tailwise")
