"""Small browser-side helpers: the connection state and this browser's annotator name.

* :class:`ConnectionWatch` covers the page with a "connection lost" notice when the websocket to
  the server drops (a crash, a restart, the network): clicks and number keys stop there instead of
  being accepted silently and lost. Labels already shown as saved are in the store.
* :class:`TableResync` makes Panel's tables show data that reached them while they were still
  being built in the browser (a queue batch that arrives right after the page opens).
* :class:`ControlGuard` keeps a widget whose ``disabled`` changes before its view has drawn its
  control from throwing a page error (the control is drawn with the current state anyway).
* :class:`NameMemory` keeps the annotator name a tab chose in the browser's ``localStorage``, so
  the next visit from this browser starts with it (without authentication there is no other
  identity, and never a shared default).
"""

from __future__ import annotations

import param
from panel.custom import JSComponent

NAME_KEY = "tailwise.annotator"
LOST_MESSAGE = ("Connection to the Tailwise server lost. Labels shown as saved are stored; "
                "nothing you click now is saved. Reload this page when the server is back.")


class ConnectionWatch(JSComponent):
    """Shows a blocking ``.tw-connection-lost`` notice once the server connection is lost."""

    message = param.String(default=LOST_MESSAGE)

    _esm = """
    export function render({ model, view }) {
      const show = () => {
        window.__twOffline = true;
        if (document.querySelector('.tw-connection-lost')) return;
        const cover = document.createElement('div');
        cover.className = 'tw-connection-lost';
        cover.setAttribute('role', 'alert');
        Object.assign(cover.style, {
          position: 'fixed', inset: '0', zIndex: '100000', display: 'flex',
          alignItems: 'center', justifyContent: 'center', background: 'rgba(40, 40, 40, 0.55)',
        });
        const box = document.createElement('div');
        Object.assign(box.style, {
          maxWidth: '34em', padding: '1.2em 1.5em', background: '#fff3f3', color: '#7a1010',
          border: '2px solid #c62828', borderRadius: '6px', font: '600 16px sans-serif',
        });
        box.textContent = model.message;
        cover.appendChild(box);
        const stop = (event) => { event.stopPropagation(); event.preventDefault(); };
        for (const kind of ['click', 'pointerdown', 'mousedown', 'keydown']) {
          cover.addEventListener(kind, stop, true);
        }
        document.addEventListener('keydown', stop, true);
        document.body.appendChild(cover);
      };
      const doc = view.model.document;
      if (doc != null) doc.on_event('connection_lost', show);
      return document.createElement('span');
    }
    """


class TableResync(JSComponent):
    """Shows in every Tabulator the data that arrived while it was being built.

    Panel's Tabulator view ignores data changes until Tabulator JS has built the table and does not
    look again afterwards, so a batch that reaches the page within that window (the queue asked
    for when the page opens, on a slow or busy machine) would leave the table empty until the
    next change. This patches the view once per page to compare its rows with the model's data
    when the build ends, and checks the tables built before the patch ran.
    """

    _esm = """
    const MODEL = 'panel.models.tabulator.DataTabulator';
    const resync = (view) => {
      if (view._initializing || view._building || view.tabulator == null) return;
      const wanted = view.model.source.get_length() ?? 0;
      // A table removed meanwhile (a view rebuilt) has nothing left to show: never an error.
      if (!view.el.isConnected || view.tabulator.rowManager?.renderer == null) return;
      if (wanted !== view.tabulator.getDataCount()) view.setData().catch(() => {});
    };
    function* walk(view) {
      yield view;
      if (typeof view.children === 'function') for (const child of view.children()) yield* walk(child);
    }
    export function render() {
      const Model = window.Bokeh.Models.get(MODEL);
      const View = Model == null ? null : Model.prototype.default_view;
      if (View != null && !View.prototype.__twResync) {
        const built = View.prototype.tableBuilt;
        View.prototype.tableBuilt = function () { built.call(this); resync(this); };
        View.prototype.__twResync = true;
        for (const root of window.Bokeh.index.roots) {
          for (const view of walk(root)) if (view instanceof View) resync(view);
        }
      }
      return document.createElement('span');
    }
    """


class ControlGuard(JSComponent):
    """Makes Bokeh skip a ``disabled`` change for a control that is not drawn yet.

    Bokeh's widget views set or remove the ``disabled`` attribute of their control elements on
    every change of the model's ``disabled``, also before the view has rendered them: with a team
    on one server, a button that follows a job (Next batch, Retrain) can change while another
    page is still being built, and the view then throws "Cannot read properties of undefined
    (reading 'removeAttribute')". A control drawn later reads the model's current state, so the
    change can be skipped. Patched once per page, when the module loads (before the views).
    """

    _esm = """
    const guard = () => {
      const dom = window.Bokeh?.require?.('core/dom');
      if (dom == null || dom.toggle_attribute.__twGuarded) return;
      const toggle = dom.toggle_attribute;
      const guarded = (el, attr, state) => (el == null ? undefined : toggle(el, attr, state));
      guarded.__twGuarded = true;
      dom.toggle_attribute = guarded;
    };
    guard();
    export function render() {
      guard();
      return document.createElement('span');
    }
    """


class NameMemory(JSComponent):
    """Two-way: restores ``value`` from this browser's storage, and stores every new value."""

    value = param.String(default="")
    locked = param.Boolean(default=False, doc="True with authentication: nothing to remember.")

    _esm = f"""
    const KEY = {NAME_KEY!r};
    export function render({{ model }}) {{
      if (!model.locked && !model.value) {{
        const saved = window.localStorage.getItem(KEY);
        if (saved) model.value = saved;
      }}
      model.on('value', () => {{
        if (!model.locked && model.value) window.localStorage.setItem(KEY, model.value);
      }});
      return document.createElement('span');
    }}
    """
