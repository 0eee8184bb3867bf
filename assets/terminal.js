// The terminal page: tabs of xterm.js terminals, each connected to a shell of its own in
// the workspace through sam, speaking the binary wire of docs/terminal-protocol.md. Plain
// ES2020, no build step. The vendored xterm scripts load before this one (all `defer`, so
// in document order).
//
// Test hook: `window.samTerminal` = { term, session, state(), offset(), tabs() }; the first
// four are those of the tab on show.
//
// Keys: Alt+Shift+← and → switch tabs from anywhere on the page, the terminal included.
'use strict';

(() => {
  /** Acknowledge rendered output at least every this many bytes... */
  const ACK_EVERY_BYTES = 32 * 1024;
  /** ...and otherwise this long after the last render, so small outputs are acked too. */
  const ACK_IDLE_MS = 100;
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 10_000;
  /** A socket that has not reached `ready` by then is given up and retried. */
  const CONNECT_TIMEOUT_MS = 10_000;
  const RESIZE_DEBOUNCE_MS = 100;
  /** Input is split below the 1 MiB message limit, so a huge paste cannot close the socket. */
  const INPUT_CHUNK_BYTES = 64 * 1024;
  /** While the workspace is not ready, sam is asked for its state this often... */
  const STATE_POLL_MS = 15_000;
  /** ...for this long at most; then the tab waits for the person to try again. */
  const STATE_POLL_FOR_MS = 60 * 60_000;
  /** States in which a tab stops connecting until the person or the workspace resumes it. */
  const HALTED = new Set(['replaced', 'unavailable', 'failed']);
  /** Workspace states that never become ready again: asking about them is pointless. */
  const GONE = new Set(['deleting', 'deleted', 'missing']);

  /** Every text this script shows; the rest of the page's words are in terminal.html. */
  const messages = {
    connection: (state, seconds) =>
      ({
        reconnecting: `reconnecting in ${seconds}s`,
        replaced: 'open in another window',
        unavailable: 'workspace not ready',
        failed: 'not connected',
      })[state] || state,
    replaced: 'This shell was opened in another window.',
    workspace: (state) =>
      ({
        requested: 'The workspace is starting; this tab connects once it is ready.',
        provisioning: 'The workspace is starting; this tab connects once it is ready.',
        stopping: 'The workspace is stopped; write /sam restart on the pull request to start it again.',
        stopped: 'The workspace is stopped; write /sam restart on the pull request to start it again.',
        failed: 'The workspace failed; write /sam restart on the pull request to try again.',
      })[state] ||
      'The workspace was deleted; write /sam open on the pull request for a new one.',
    expired: 'Your session for this workspace has expired; open the link from GitHub again.',
    takeBack: 'Take it back',
    retry: 'Try again',
    enter: 'or press Enter',
    lost: (bytes) => `[${bytes.toLocaleString('en')} bytes of earlier output were lost]`,
    exit: (status) =>
      status === -1
        ? '[the shell was killed by a signal; close this tab, or reload the page for a new shell]'
        : `[the shell exited with status ${status}; close this tab, or reload the page for a new shell]`,
    error: (text) => `[sam: ${text}]`,
    tooManyTabs: (max) => `At most ${max} tabs: close one to open another`,
    closeTab: (label) => `Close tab ${label}`,
  };

  /**
   * The wire format: every encoding and decoding of a message is here. One binary message
   * is a type byte, a fixed big-endian header, then an optional payload. Offsets are u64
   * on the wire and plain numbers here, exact up to 2^53 bytes of output.
   */
  const wire = (() => {
    const TYPE = {
      input: 0x01, output: 0x02, resize: 0x03, ack: 0x04, ping: 0x05,
      pong: 0x06, hello: 0x07, ready: 0x08, exit: 0x09, error: 0x0a, close: 0x0b,
    };
    const text = new TextDecoder();

    /** A message of `type` with `size` header bytes, as a DataView to fill in. */
    const frame = (type, size) => {
      const view = new DataView(new ArrayBuffer(1 + size));
      view.setUint8(0, type);
      return view;
    };
    // Sizes are u16 on the wire; the agent clamps to 1..=1000 as well.
    const size = (n) => Math.min(1000, Math.max(1, Math.floor(n) || 1));
    const u64 = (n) => BigInt(Math.max(0, Math.floor(n)));

    return {
      input(bytes) {
        const out = new Uint8Array(1 + bytes.length);
        out[0] = TYPE.input;
        out.set(bytes, 1);
        return out.buffer;
      },
      resize(cols, rows) {
        const v = frame(TYPE.resize, 4);
        v.setUint16(1, size(cols));
        v.setUint16(3, size(rows));
        return v.buffer;
      },
      ack(offset) {
        const v = frame(TYPE.ack, 8);
        v.setBigUint64(1, u64(offset));
        return v.buffer;
      },
      /** Answers a ping with its nonce, kept as the BigInt it was read as. */
      pong(nonce) {
        const v = frame(TYPE.pong, 8);
        v.setBigUint64(1, nonce);
        return v.buffer;
      },
      hello(offset, cols, rows) {
        const v = frame(TYPE.hello, 12);
        v.setBigUint64(1, u64(offset));
        v.setUint16(9, size(cols));
        v.setUint16(11, size(rows));
        return v.buffer;
      },
      close() {
        return frame(TYPE.close, 0).buffer;
      },

      /** Reads one message from the agent; throws on one too short for its type. */
      decode(buffer) {
        const view = new DataView(buffer);
        if (view.byteLength === 0) throw new Error('empty message');
        const type = view.getUint8(0);
        const need = (n, name) => {
          if (view.byteLength < 1 + n) throw new Error(`${name} header too short`);
        };
        switch (type) {
          case TYPE.output:
            need(8, 'output');
            return {
              type: 'output',
              offset: Number(view.getBigUint64(1)),
              data: new Uint8Array(buffer, 9),
            };
          case TYPE.ready:
            need(16, 'ready');
            return {
              type: 'ready',
              offset: Number(view.getBigUint64(1)),
              lost: Number(view.getBigUint64(9)),
            };
          case TYPE.ping:
          case TYPE.pong: {
            const name = type === TYPE.ping ? 'ping' : 'pong';
            need(8, name);
            return { type: name, nonce: view.getBigUint64(1) };
          }
          case TYPE.exit:
            need(4, 'exit');
            return { type: 'exit', status: view.getInt32(1) };
          case TYPE.error:
            return { type: 'error', text: text.decode(new Uint8Array(buffer, 1)) };
          default:
            return { type: 'unknown', code: type };
        }
      },
    };
  })();

  // ---- the page ----

  const root = document.getElementById('sam-terminal');
  const screenEl = document.getElementById('sam-screen');
  const emptyEl = document.getElementById('sam-empty');
  const statusEl = document.getElementById('sam-connection');
  const keysEl = document.getElementById('sam-keys');
  const tabListEl = document.getElementById('sam-tabs');
  const newTabEl = document.getElementById('sam-new-tab');
  const noteEl = document.getElementById('sam-tab-note');
  const wsPath = root.dataset.wsPath;
  const statePath = root.dataset.statePath;
  const workspaceStateEl = document.getElementById('sam-state');
  const workspaceId = root.dataset.workspaceId;
  /** The agent refuses more shells per workspace than this; the server says how many. */
  const maxTabs = Number(root.dataset.maxTabs) || 8;
  const baseTitle = document.title;
  const encoder = new TextEncoder();

  /** crypto.randomUUID exists only in secure contexts; sam may be served over plain http. */
  function randomUuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return hex.replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
  }

  /** Opens http(s) links only, in a new tab that gets no handle on this page. */
  function openLink(uri) {
    let url;
    try {
      url = new URL(uri);
    } catch {
      return;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return;
    window.open(url.href, '_blank', 'noopener,noreferrer');
  }

  /**
   * A line of sam's own, dim, ready to write. Control characters are dropped so a message
   * cannot drive the terminal.
   */
  function dimLine(text) {
    const clean = text
      .split(/\r?\n/)
      .map((line) => line.replace(/[\x00-\x1f\x7f-\x9f]/g, ''))
      .join('\r\n');
    return `\x1b[0;2m${clean}\x1b[0m\r\n`;
  }

  /**
   * The workspace's state as sam tells it ('ready', 'stopped', …), 'expired' when the
   * session cookie no longer opens this workspace, or null when sam could not be asked.
   */
  async function workspaceState() {
    let response;
    try {
      response = await fetch(statePath, { cache: 'no-store', credentials: 'same-origin' });
    } catch {
      return null;
    }
    if (response.status === 401 || response.status === 403) return 'expired';
    if (response.status === 404) return 'missing';
    if (!response.ok) return null;
    const { state } = await response.json().catch(() => ({}));
    if (typeof state !== 'string') return null;
    workspaceStateEl.textContent = state;
    return state;
  }

  // ---- the tabs this browser tab had ----

  /**
   * Which shells this page shows, kept in sessionStorage: it outlives a reload but is not
   * shared with other browser tabs, so a reload resumes the same shells and another
   * browser tab starts its own. "Duplicate tab" copies sessionStorage, so a duplicate joins
   * the same shells; each tab that loses its shell to it stops and offers to take it back.
   */
  const saved = (() => {
    const key = `sam.tabs.${workspaceId}`;
    /** Where the page kept its one shell before it had tabs. */
    const oldKey = `sam.session.${workspaceId}`;
    // The server's rule for session names.
    const validName = (name) => typeof name === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(name);

    const read = (name) => {
      try {
        return sessionStorage.getItem(name);
      } catch {
        // Storage can be disabled; the page then gets new shells on every load.
        return null;
      }
    };

    return {
      /** The saved tabs, cleaned up: [{ session, number }] and the active session. */
      load() {
        let state = null;
        try {
          state = JSON.parse(read(key) || 'null');
        } catch {
          // A damaged entry is as good as none.
        }
        const list = Array.isArray(state && state.tabs) ? state.tabs : [];
        const old = read(oldKey);
        if (list.length === 0 && validName(old)) list.push({ session: old, number: 1 });
        const tabs = [];
        for (const entry of list) {
          const { session, number } = entry || {};
          if (tabs.length === maxTabs || !validName(session)) continue;
          if (tabs.some((t) => t.session === session)) continue;
          const taken = tabs.some((t) => t.number === number);
          const ok = Number.isInteger(number) && number > 0 && number <= maxTabs && !taken;
          tabs.push({ session, number: ok ? number : freeNumber(tabs) });
        }
        return { tabs, active: state && state.active };
      },
      store(tabs, active) {
        const state = {
          tabs: tabs.map((tab) => ({ session: tab.name, number: tab.number })),
          active: active ? active.name : null,
        };
        try {
          sessionStorage.setItem(key, JSON.stringify(state));
          sessionStorage.removeItem(oldKey);
        } catch {
          // As above.
        }
      },
    };
  })();

  /** The smallest tab number not in use, so labels stay short and a tab keeps its own. */
  function freeNumber(tabs) {
    let number = 1;
    while (tabs.some((tab) => tab.number === number)) number += 1;
    return number;
  }

  // ---- one tab: a terminal and its connection ----

  /** Gives every tab's elements ids of their own, also when a number comes back. */
  let serial = 0;

  class Tab {
    constructor(name, number) {
      /** The session name: which shell of the workspace this tab shows. */
      this.name = name;
      this.number = number;
      this.title = '';

      serial += 1;
      const tabId = `sam-tab-${serial}`;
      const panelId = `sam-panel-${serial}`;
      this.panel = document.createElement('div');
      this.panel.className = 'panel';
      this.panel.id = panelId;
      this.panel.hidden = true;
      this.panel.setAttribute('role', 'tabpanel');
      this.panel.setAttribute('aria-labelledby', tabId);

      // Why the tab stopped connecting, and the way out, over the foot of its terminal.
      this.noticeEl = document.createElement('div');
      this.noticeEl.className = 'panel-notice';
      this.noticeEl.hidden = true;
      this.noticeEl.setAttribute('role', 'alert');
      this.noticeTextEl = document.createElement('span');
      this.actionEl = document.createElement('button');
      this.actionEl.type = 'button';
      this.actionEl.className = 'panel-action';
      this.actionEl.addEventListener('click', () => this.resume());
      const enterEl = document.createElement('span');
      enterEl.className = 'panel-hint';
      enterEl.textContent = messages.enter;
      this.noticeEl.append(this.noticeTextEl, this.actionEl, enterEl);

      this.button = document.createElement('button');
      this.button.type = 'button';
      this.button.id = tabId;
      this.button.tabIndex = -1;
      this.button.setAttribute('role', 'tab');
      this.button.setAttribute('aria-selected', 'false');
      this.button.setAttribute('aria-controls', panelId);
      const numberEl = document.createElement('span');
      numberEl.className = 'tab-number';
      numberEl.textContent = String(number);
      this.titleEl = document.createElement('span');
      this.titleEl.className = 'tab-title';
      this.button.append(numberEl, this.titleEl);

      this.closeButton = document.createElement('button');
      this.closeButton.type = 'button';
      this.closeButton.className = 'tab-close';
      this.closeButton.tabIndex = -1;
      this.closeButton.textContent = '×';
      this.closeButton.setAttribute('aria-label', messages.closeTab(number));
      this.closeButton.title = messages.closeTab(number);

      // The close button sits beside the tab, not in it: a tab may hold no other control.
      this.item = document.createElement('div');
      this.item.className = 'tab';
      this.item.setAttribute('role', 'presentation');
      this.item.append(this.button, this.closeButton);

      screenEl.append(this.panel);
      tabListEl.append(this.item);
      this.initConnection();
      this.openTerminal();
    }

    openTerminal() {
      const term = new Terminal({
        // term.unicode, used for Unicode 11 character widths, is a proposed API in xterm 5.
        allowProposedApi: true,
        cursorBlink: true,
        // System fonts only: the CSP allows no font from elsewhere, and sam ships none.
        fontFamily:
          'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
        fontSize: 14,
        scrollback: 5000,
        // OSC 8 hyperlinks follow the same rule as detected links.
        linkHandler: { activate: (_event, uri) => openLink(uri) },
        theme: {
          background: '#0d1117',
          foreground: '#c9d1d9',
          cursor: '#c9d1d9',
          selectionBackground: '#264f78',
        },
      });
      // The canvas renderer must be loaded before open(): xterm's default DOM renderer
      // writes <style> elements and style attributes, which the page's CSP (style-src
      // 'self') refuses.
      term.loadAddon(new CanvasAddon.CanvasAddon());
      this.fit = new FitAddon.FitAddon();
      term.loadAddon(this.fit);
      term.loadAddon(new Unicode11Addon.Unicode11Addon());
      term.unicode.activeVersion = '11';
      term.loadAddon(new WebLinksAddon.WebLinksAddon((_event, uri) => openLink(uri)));
      // A hidden panel keeps its size (terminal.css), so the terminal measures right.
      term.open(this.panel);
      this.panel.append(this.noticeEl);
      this.fit.fit();

      term.onTitleChange((title) => this.setTitle(title));
      term.onData((data) => this.sendInput(encoder.encode(applyCtrl(data))));
      // onBinary carries bytes as one char per byte (some mouse reports).
      term.onBinary((data) => this.sendInput(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
      term.onResize(({ cols, rows }) => {
        if (this.live) this.send(wire.resize(cols, rows));
      });
      this.term = term;
    }

    /** Titles from the shell are text: they go into textContent and document.title only. */
    setTitle(title) {
      this.title = (title || '').slice(0, 100);
      this.titleEl.textContent = this.title;
      this.button.title = this.title;
      if (this === active) showTitle();
    }

    /** The tab's name for people and tests: its number, then the shell's title if any. */
    get label() {
      return this.title ? `${this.number} ${this.title}` : String(this.number);
    }

    /** Shows or hides this tab; the caller keeps exactly one shown. */
    setShown(shown) {
      this.panel.hidden = !shown;
      this.button.setAttribute('aria-selected', String(shown));
      // One tab stop for the whole list (the arrows move within it), and one for the
      // close button of the tab on show.
      this.button.tabIndex = shown ? 0 : -1;
      this.closeButton.tabIndex = shown ? 0 : -1;
      // The window may have changed size while the tab was hidden.
      if (shown) this.fit.fit();
    }

    // -- the connection --

    initConnection() {
      this.socket = null;
      /** `ready` has arrived on the current socket: input, resize and acks may flow. */
      this.live = false;
      this.exited = false;
      /** The person closed the tab: the socket only carries `close` now. */
      this.closing = false;
      /** Connections that failed since the last `ready`, for the backoff. */
      this.attempt = 0;
      /** Sockets opened so far; also tells a late answer from sam it is out of date. */
      this.connections = 0;
      /** The agent's `error` on a socket that has not reached `ready`: why it refused. */
      this.refusal = null;
      /** When the tab began waiting for the workspace to be ready, for the polling's end. */
      this.waitingSince = 0;
      /** The workspace's state sam last gave while the tab waits for it. */
      this.waitingFor = null;
      /** Offset just past the last output byte handed to xterm; the next `hello` sends it. */
      this.received = 0;
      /** Offset just past the last byte xterm has finished parsing. */
      this.rendered = 0;
      /** The last offset acknowledged (or announced by `hello`) on the current socket. */
      this.acked = 0;
      /** The size the last `hello` announced. */
      this.helloSize = { cols: 0, rows: 0 };
      this.ackTimer = 0;
      this.connectTimer = 0;
      this.reconnectTimer = 0;
      this.countdownTimer = 0;
      this.pollTimer = 0;
      this.connection = 'connecting';
      this.seconds = 0;
    }

    setConnection(state, seconds) {
      this.connection = state;
      this.seconds = seconds;
      this.button.dataset.connection = state;
      if (this === active) showConnection();
    }

    /** Sends one message if the socket is open; returns whether it went out. */
    send(message) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
      this.socket.send(message);
      return true;
    }

    connect() {
      this.clearReconnect();
      this.noticeEl.hidden = true;
      this.refusal = null;
      this.connections += 1;
      this.setConnection('connecting');

      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      // Same origin, so the session cookie authenticates the socket; no token in the URL.
      const url = `${scheme}//${location.host}${wsPath}?session=${encodeURIComponent(this.name)}`;
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      this.socket = ws;
      this.connectTimer = setTimeout(() => ws.close(), CONNECT_TIMEOUT_MS);

      ws.onopen = () => {
        if (this.closing) {
          // The agent takes nothing before `hello`; what follows `close` is not read.
          ws.send(wire.hello(this.received, this.helloSize.cols, this.helloSize.rows));
          this.sayClose();
          return;
        }
        // The agent counts what `hello` says we hold as delivered, so acks restart from it.
        this.acked = this.received;
        this.helloSize = { cols: this.term.cols, rows: this.term.rows };
        ws.send(wire.hello(this.received, this.term.cols, this.term.rows));
      };
      ws.onmessage = (event) => {
        if (ws === this.socket && !this.closing) this.receive(event.data);
      };
      ws.onclose = (event) => {
        if (ws !== this.socket) return;
        clearTimeout(this.connectTimer);
        this.socket = null;
        const wasLive = this.live;
        this.live = false;
        if (this.closing) return;
        if (this.exited) this.setConnection('exited');
        // Another page took the shell over. Reconnecting would take it back, and that page
        // would do the same, each stealing the shell from the other without end.
        else if (event.code === 1000 && event.reason === 'replaced') {
          this.halt('replaced', messages.replaced);
        } else if (wasLive) this.scheduleReconnect();
        else this.checkWorkspace();
      };
    }

    receive(data) {
      if (typeof data === 'string') {
        console.warn('sam: ignoring a text message; the terminal wire is binary');
        return;
      }
      let message;
      try {
        message = wire.decode(data);
      } catch (err) {
        console.warn(`sam: ignoring a malformed message: ${err.message}`);
        return;
      }
      switch (message.type) {
        case 'ready':
          return this.onReady(message);
        case 'output':
          return this.onOutput(message);
        case 'ping':
          this.send(wire.pong(message.nonce));
          return;
        case 'pong':
          return; // This page sends no pings.
        case 'exit':
          return this.onExit(message.status);
        case 'error':
          if (!this.live) this.refusal = message.text;
          return this.notice(messages.error(message.text));
        default:
          console.warn(`sam: ignoring a message of unknown type ${message.code}`);
      }
    }

    onReady({ offset, lost }) {
      clearTimeout(this.connectTimer);
      this.live = true;
      this.attempt = 0;
      this.setConnection('connected');

      if (lost > 0 || offset !== this.received) {
        // Start the screen over: either the agent no longer holds everything this page
        // missed, or its stream is not the one on screen (a new shell under this session's
        // name answers from its own start). ESC c is a full reset, written rather than
        // term.reset() so output still queued in xterm is parsed before it, and the notice
        // goes with it so replayed output cannot come first.
        if (lost === 0) {
          console.warn(`sam: agent resumes at ${offset}, this page holds ${this.received}`);
        }
        this.term.write(`\x1bc${lost > 0 ? dimLine(messages.lost(lost)) : ''}`);
        this.received = this.rendered = this.acked = offset;
      }

      // The window may have changed size while the socket was opening.
      const { cols, rows } = this.term;
      if (cols !== this.helloSize.cols || rows !== this.helloSize.rows) {
        this.send(wire.resize(cols, rows));
      }
    }

    onOutput({ offset, data }) {
      const end = offset + data.length;
      if (end <= this.received) return; // Already written: a duplicate.
      if (offset > this.received) {
        console.warn(`sam: output jumps from ${this.received} to ${offset}`);
      }
      const fresh = offset < this.received ? data.subarray(this.received - offset) : data;
      this.received = end;
      // xterm decodes UTF-8 as a stream, so a character split across frames comes out
      // whole. Its write callbacks run whether or not the tab is on show, so a hidden
      // tab acknowledges its output too and the agent never pauses its shell for it.
      this.term.write(fresh, () => this.onRendered(end));
    }

    onRendered(end) {
      // Callbacks of output written before a reset may arrive late with older offsets.
      this.rendered = Math.max(this.rendered, end);
      if (this.rendered - this.acked >= ACK_EVERY_BYTES) this.flushAck();
      else if (!this.ackTimer) this.ackTimer = setTimeout(() => this.flushAck(), ACK_IDLE_MS);
    }

    flushAck() {
      clearTimeout(this.ackTimer);
      this.ackTimer = 0;
      if (this.live && this.rendered > this.acked && this.send(wire.ack(this.rendered))) {
        this.acked = this.rendered;
      }
    }

    onExit(status) {
      this.exited = true;
      this.live = false;
      this.notice(messages.exit(status));
      // A dead shell takes no keys; hiding the cursor says so too.
      this.term.options.disableStdin = true;
      this.term.write('\x1b[?25l');
      this.setConnection('exited');
    }

    /** Writes a dim line after the output already queued, on a line of its own. */
    notice(text) {
      // The empty write's callback runs once everything queued before it is parsed, so the
      // cursor read there is where the notice goes.
      this.term.write('', () => {
        this.term.write((this.term.buffer.active.cursorX > 0 ? '\r\n' : '') + dimLine(text));
      });
    }

    /**
     * A socket that failed before `ready` may never succeed: sam refuses the handshake for a
     * workspace that is not ready, which a browser sees only as a failure, and the agent
     * refuses a shell past its limit. Retrying cannot help either, so sam is asked first.
     */
    async checkWorkspace() {
      const refusal = this.refusal;
      const connections = this.connections;
      const state = await workspaceState();
      // The tab was closed or resumed by hand meanwhile.
      if (this.closing || this.connections !== connections) return;
      if (state === 'expired') this.halt('failed', messages.expired);
      else if (state && state !== 'ready') this.waitForWorkspace(state);
      else if (refusal) this.halt('failed', refusal);
      else this.scheduleReconnect();
    }

    /**
     * Asks sam about the workspace now and then, and connects once it is ready again. Slowly
     * and for a bounded time: a stopped workspace starts again only when someone asks for it
     * on GitHub.
     */
    waitForWorkspace(state) {
      if (this.connection !== 'unavailable') this.waitingSince = Date.now();
      this.waitingFor = state;
      this.halt('unavailable', messages.workspace(state));
      if (GONE.has(state) || Date.now() - this.waitingSince > STATE_POLL_FOR_MS) return;
      this.pollTimer = setTimeout(() => this.pollWorkspace(), STATE_POLL_MS);
    }

    async pollWorkspace() {
      clearTimeout(this.pollTimer);
      this.pollTimer = 0;
      const connections = this.connections;
      const state = await workspaceState();
      if (this.closing || this.connections !== connections) return;
      if (state === 'ready') this.connect();
      else if (state === 'expired') this.halt('failed', messages.expired);
      // Without an answer, the last one still holds.
      else this.waitForWorkspace(state || this.waitingFor);
    }

    /** Stops connecting, saying why in the tab, until `resume`. */
    halt(state, text) {
      this.clearReconnect();
      this.noticeTextEl.textContent = text;
      this.actionEl.textContent = state === 'replaced' ? messages.takeBack : messages.retry;
      this.noticeEl.hidden = false;
      this.setConnection(state);
    }

    /** The person asks for the shell again: one try, whatever stopped the tab. */
    resume() {
      this.attempt = 0;
      this.connect();
      if (this === active) this.term.focus();
    }

    scheduleReconnect() {
      // Half of each wait is fixed and half random ("equal jitter"): pages that lost sam at
      // the same moment spread out, and none retries in a tight loop.
      const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt);
      const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
      const at = Date.now() + delay;
      this.attempt += 1;

      const tick = () => {
        this.setConnection('reconnecting', Math.max(1, Math.ceil((at - Date.now()) / 1000)));
      };
      tick();
      this.countdownTimer = setInterval(tick, 1000);
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    }

    clearReconnect() {
      clearTimeout(this.reconnectTimer);
      clearInterval(this.countdownTimer);
      clearTimeout(this.pollTimer);
      this.reconnectTimer = this.countdownTimer = this.pollTimer = 0;
    }

    /** Skips the rest of a wait when the network or the browser tab comes back. */
    reconnectNow() {
      if (this.reconnectTimer) this.connect();
      else if (this.pollTimer) this.pollWorkspace();
    }

    /**
     * Input typed while the socket is down is dropped: keys typed blind and replayed into a
     * shell later would surprise more than they help.
     */
    sendInput(bytes) {
      if (HALTED.has(this.connection) && bytes.length === 1 && bytes[0] === 0x0d) this.resume();
      if (!this.live) return;
      for (let at = 0; at < bytes.length; at += INPUT_CHUNK_BYTES) {
        this.send(wire.input(bytes.subarray(at, at + INPUT_CHUNK_BYTES)));
      }
    }

    /**
     * Takes the tab off the page and ends its shell now rather than after the agent's
     * grace period. Without an open socket, one is opened just to say so; should that
     * fail too, the grace period still ends the shell.
     */
    close() {
      this.closing = true;
      this.clearReconnect();
      clearTimeout(this.ackTimer);
      this.helloSize = { cols: this.term.cols, rows: this.term.rows };
      this.term.dispose();
      this.item.remove();
      this.panel.remove();
      // A replaced tab's shell is another window's now, and a halted tab has no shell to end.
      if (this.exited || HALTED.has(this.connection)) return;
      if (!this.socket) this.connect();
      else if (this.socket.readyState === WebSocket.OPEN) this.sayClose();
      // A socket still opening says it from onopen.
    }

    sayClose() {
      const ws = this.socket;
      ws.send(wire.close());
      // Buffered messages go out before the close handshake.
      ws.close(1000, 'tab closed');
    }
  }

  // ---- the tab strip ----

  /** Every open tab, in the order shown. */
  const tabs = [];
  /** The tab on show; null only when every tab was closed. */
  let active = null;

  function showConnection() {
    const state = active ? active.connection : 'closed';
    statusEl.dataset.connection = state;
    statusEl.textContent = messages.connection(state, active ? active.seconds : 0);
  }

  function showTitle() {
    document.title = active && active.title ? `${active.title} · ${baseTitle}` : baseTitle;
  }

  function remember() {
    saved.store(tabs, active);
  }

  /** How many more tabs the page may open, and a word about it when none. */
  function updateNewTab() {
    const full = tabs.length >= maxTabs;
    newTabEl.setAttribute('aria-disabled', String(full));
    newTabEl.title = full ? messages.tooManyTabs(maxTabs) : 'New tab';
    if (!full) noteEl.textContent = '';
  }

  /**
   * Shows `tab` and focuses its terminal, or the tab itself when the keyboard moved
   * within the tab list (focus there lets the arrows go on).
   */
  function select(tab, focus = 'terminal') {
    if (active && active !== tab) active.setShown(false);
    active = tab;
    emptyEl.hidden = tab !== null;
    if (tab) {
      tab.setShown(true);
      if (focus === 'tab') tab.button.focus();
      else tab.term.focus();
    }
    showConnection();
    showTitle();
    remember();
  }

  function openTab(name, number) {
    const tab = new Tab(name, number);
    tabs.push(tab);
    tab.connect();
    updateNewTab();
    return tab;
  }

  function newTab() {
    if (tabs.length >= maxTabs) {
      noteEl.textContent = messages.tooManyTabs(maxTabs);
      return;
    }
    select(openTab(randomUuid(), freeNumber(tabs)));
  }

  function closeTab(tab, focus = 'terminal') {
    const at = tabs.indexOf(tab);
    if (at < 0) return;
    tabs.splice(at, 1);
    const wasActive = tab === active;
    if (wasActive) active = null;
    tab.close();
    if (wasActive) select(tabs[Math.min(at, tabs.length - 1)] || null, focus);
    else remember();
    updateNewTab();
    if (!active) newTabEl.focus();
  }

  function tabOf(element) {
    return tabs.find((tab) => tab.item.contains(element)) || null;
  }

  newTabEl.addEventListener('click', newTab);

  tabListEl.addEventListener('click', (event) => {
    const tab = tabOf(event.target);
    if (!tab) return;
    if (event.target.closest('.tab-close')) closeTab(tab);
    else select(tab);
  });

  // The keys of the WAI-ARIA tabs pattern: arrows, Home and End move along the list and
  // show the tab they reach; Delete closes the focused tab.
  tabListEl.addEventListener('keydown', (event) => {
    const tab = tabOf(event.target);
    if (!tab || event.target !== tab.button || event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    const at = tabs.indexOf(tab);
    const next = {
      ArrowLeft: tabs[(at - 1 + tabs.length) % tabs.length],
      ArrowRight: tabs[(at + 1) % tabs.length],
      Home: tabs[0],
      End: tabs[tabs.length - 1],
    }[event.key];
    if (next) {
      event.preventDefault();
      select(next, 'tab');
    } else if (event.key === 'Delete') {
      event.preventDefault();
      closeTab(tab, 'tab');
    }
  });

  /** -1 or 1 for the keys that switch tabs from anywhere on the page, else 0. */
  function tabStep(event) {
    if (!event.altKey || !event.shiftKey || event.ctrlKey || event.metaKey) return 0;
    return { ArrowLeft: -1, ArrowRight: 1 }[event.key] || 0;
  }

  // xterm keeps every key typed in it (Tab too), so keyboard users could not leave a
  // terminal for the tab list. Alt+Shift+arrows are unbound in shells and common programs,
  // and browsers reserve them for nothing. Caught on the way down, before xterm sees them.
  window.addEventListener(
    'keydown',
    (event) => {
      const step = tabStep(event);
      if (step === 0 || tabs.length === 0) return;
      event.preventDefault();
      event.stopPropagation();
      const at = tabs.indexOf(active);
      const onTabList = tabListEl.contains(document.activeElement);
      select(tabs[(at + step + tabs.length) % tabs.length], onTabList ? 'tab' : 'terminal');
    },
    true,
  );

  window.addEventListener('online', () => tabs.forEach((tab) => tab.reconnectNow()));
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') tabs.forEach((tab) => tab.reconnectNow());
  });

  // ---- the key bar ----

  let ctrlArmed = false;

  /** The sticky Ctrl of the key bar turns the next typed character into its control code. */
  function applyCtrl(data) {
    if (!ctrlArmed) return data;
    setCtrl(false);
    if (data.length !== 1) return data;
    const code = /[a-z]/.test(data) ? data.charCodeAt(0) - 0x20 : data.charCodeAt(0);
    if (code >= 0x40 && code <= 0x5f) return String.fromCharCode(code & 0x1f); // @ A-Z [ \ ] ^ _
    if (data === ' ') return '\x00';
    if (data === '?') return '\x7f';
    return data;
  }

  function setCtrl(armed) {
    ctrlArmed = armed;
    keysEl.querySelector('[data-key="ctrl"]').setAttribute('aria-pressed', String(armed));
  }

  const ARROW_FINAL = { up: 'A', down: 'B', right: 'C', left: 'D' };
  const KEY_BYTES = { esc: '\x1b', tab: '\t' };

  function keySequence(key, term) {
    const final = ARROW_FINAL[key];
    if (!final) return KEY_BYTES[key] || '';
    if (ctrlArmed) return `\x1b[1;5${final}`;
    // Full-screen programs switch the arrows to application mode (DECCKM).
    return term.modes.applicationCursorKeysMode ? `\x1bO${final}` : `\x1b[${final}`;
  }

  // Keep focus, and so the on-screen keyboard, on the terminal while a key is tapped.
  keysEl.addEventListener('pointerdown', (event) => event.preventDefault());
  keysEl.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-key]');
    if (!button || !active) return;
    const key = button.dataset.key;
    if (key === 'ctrl') {
      setCtrl(!ctrlArmed);
    } else {
      active.sendInput(encoder.encode(keySequence(key, active.term)));
      setCtrl(false);
    }
    active.term.focus();
  });

  // ---- size ----

  // Watching the element, not just the window, also catches the key bar and the
  // on-screen keyboard changing the space left for the terminals. Hidden tabs keep their
  // size too, so their shells lay out background output for the size they will show at.
  let fitTimer = 0;
  new ResizeObserver(() => {
    clearTimeout(fitTimer);
    fitTimer = setTimeout(() => tabs.forEach((tab) => tab.fit.fit()), RESIZE_DEBOUNCE_MS);
  }).observe(screenEl);

  // Some mobile browsers (iOS Safari) do not shrink the layout for the on-screen
  // keyboard; following the visual viewport keeps the prompt above it. Pinch zoom also
  // changes the visual viewport, so only an unzoomed one is followed.
  const viewport = window.visualViewport;
  if (viewport && matchMedia('(pointer: coarse)').matches) {
    const follow = () => {
      if (Math.abs(viewport.scale - 1) > 0.01) return;
      document.documentElement.style.setProperty('--app-height', `${viewport.height}px`);
    };
    viewport.addEventListener('resize', follow);
    follow();
  }

  window.samTerminal = Object.freeze({
    get term() {
      return active ? active.term : null;
    },
    get session() {
      return active ? active.name : null;
    },
    /**
     * 'connecting', 'connected', 'reconnecting', 'exited', 'closed' with no tab, or one that
     * waits for the person or the workspace: 'replaced' (the shell was opened elsewhere),
     * 'unavailable' (the workspace is not ready) or 'failed' (the agent refused the shell).
     */
    state: () => (active ? active.connection : 'closed'),
    /** Offset just past the last output byte written to the terminal. */
    offset: () => (active ? active.received : 0),
    /**
     * Every tab in order: its session, label, connection state, offset, whether shown, how
     * many sockets it opened, and what it says when it stopped connecting.
     */
    tabs: () =>
      tabs.map((tab) => ({
        session: tab.name,
        label: tab.label,
        state: tab.connection,
        offset: tab.received,
        active: tab === active,
        connections: tab.connections,
        notice: tab.noticeEl.hidden ? '' : tab.noticeTextEl.textContent,
      })),
  });

  // ---- start: the tabs of the last load, or one new tab ----

  const restored = saved.load();
  for (const { session, number } of restored.tabs) openTab(session, number);
  if (tabs.length === 0) openTab(randomUuid(), 1);
  select(tabs.find((tab) => tab.name === restored.active) || tabs[0]);
})();
