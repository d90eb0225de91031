"""Start opening the project when the server starts, so the first page finds it (nearly) ready.

Embedding and the 2-D map (UMAP's JIT warm-up costs seconds in a new process) run in a background
thread; pages join the same preparation through ``dashboard.state.open_shared``. The last saved
model is shown at once and the project retrains in the background; every long step reports its
progress to the server log (logger ``tailwise``) as well as to the page.
"""

import logging
import sys

_ARGV = list(sys.argv[1:])  # bokeh runs this module with the --args of `panel serve`


def show_progress_in_log() -> None:
    """Let the ``tailwise`` logger's INFO lines (progress of long steps) reach the server log.

    ``panel serve`` sets only the ``bokeh`` logger to its ``--log-level`` (INFO by default); the
    root logger stays at WARNING, which would hide every progress line of ours. Ours follows
    ``--log-level`` too.
    """
    ours = logging.getLogger("tailwise")
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.getLogger("bokeh").getEffectiveLevel())


def quiet_closed_connections(loop=None) -> None:
    """A browser that closes its tab while the server writes to it is no server error: say so in
    one log line instead of the "Task exception was never retrieved" traceback tornado leaves
    (with a team, tabs close while other tabs' labels are being sent to them)."""
    from tornado.ioloop import IOLoop
    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError

    loop = loop or IOLoop.current().asyncio_loop  # the loop the Bokeh server runs on

    def handle(loop, context) -> None:
        if isinstance(context.get("exception"), (StreamClosedError, WebSocketClosedError)):
            logging.getLogger("tailwise").info("a browser closed its connection while the server "
                                               "was sending to it")
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def on_server_loaded(server_context) -> None:
    from core.serve import where_it_lives
    from dashboard.app import resolve_project
    from dashboard.offline import local_stylesheets, offline_auth_pages
    from dashboard.state import open_shared

    offline_auth_pages()  # Panel's login page would fetch its logo from a CDN
    local_stylesheets()  # and a view redrawn in a hidden tab its stylesheets
    show_progress_in_log()
    quiet_closed_connections()
    from tornado.ioloop import IOLoop

    from dashboard.loopwatch import start_from_environment

    start_from_environment(IOLoop.current().asyncio_loop)  # TAILWISE_LOOP_WATCH: diagnostics
    try:
        project = resolve_project(_ARGV)
        # Say where the project and its label store are: the quick start writes them for you.
        print(f"Tailwise {where_it_lives(project)}".replace("\n", "\nTailwise "), flush=True)
        open_shared(project)
    except Exception as err:  # noqa: BLE001  (the page shows the error when it opens)
        logging.getLogger("tailwise").warning("could not start preparing the project: %s", err)
