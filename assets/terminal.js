// The terminal page: xterm.js connected to a workspace shell through sam, speaking the
// binary wire of docs/terminal-protocol.md. Plain ES2020, no build step. The vendored
// xterm scripts load before this one (all `defer`, so in document order).
//
// Test hook: `window.samTerminal` = { term, session, state(), offset() }.
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

  /** Every text this script shows; the rest of the page's words are in terminal.html. */
  const messages = {
    connection: (state, seconds) =>
      state === 'reconnecting' ? `reconnecting in ${seconds}s` : state,
    lost: (bytes) => `[${bytes.toLocaleString('en')} bytes of earlier output were lost]`,
    exit: (status) =>
      status === -1
        ? '[the shell was killed by a signal; reload the page for a new one]'
        : `[the shell exited with status ${status}; reload the page for a new one]`,
    error: (text) => `[sam: ${text}]`,
  };

  /**
   * The wire format: every encoding and decoding of a message is here. One binary message
   * is a type byte, a fixed big-endian header, then an optional payload. Offsets are u64
   * on the wire and plain numbers here, exact up to 2^53 bytes of output.
   */
  const wire = (() => {
    const TYPE = {
      input: 0x01, output: 0x02, resize: 0x03, ack: 0x04, ping: 0x05,
      pong: 0x06, hello: 0x07, ready: 0x08, exit: 0x09, error: 0x0a,
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
  const statusEl = document.getElementById('sam-connection');
  const keysEl = document.getElementById('sam-keys');
  const wsPath = root.dataset.wsPath;
  const sessionKey = `sam.session.${root.dataset.workspaceId}`;
  const session = sessionName();
  const baseTitle = document.title;

  /**
   * One shell per tab: sessionStorage outlives a reload of the tab but is not shared with
   * other tabs, so a reload resumes the same shell and a new tab starts its own. A known
   * limit: "duplicate tab" copies sessionStorage, so a duplicate joins the same shell.
   */
  function sessionName() {
    let name = null;
    try {
      name = sessionStorage.getItem(sessionKey);
    } catch {
      // Storage can be disabled; the tab then gets a new shell on every load.
    }
    if (!name || !/^[0-9a-f-]{36}$/.test(name)) {
      name = randomUuid();
      try {
        sessionStorage.setItem(sessionKey, name);
      } catch {
        // As above.
      }
    }
    return name;
  }

  /** crypto.randomUUID exists only in secure contexts; sam may be served over plain http. */
  function randomUuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return hex.replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
  }

  /** After the shell exits, a reload of this tab should start a new one. */
  function forgetSession() {
    try {
      sessionStorage.removeItem(sessionKey);
    } catch {
      // Nothing to forget.
    }
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

  // ---- the terminal ----

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

  // The canvas renderer must be loaded before open(): xterm's default DOM renderer writes
  // <style> elements and style attributes, which the page's CSP (style-src 'self') refuses.
  term.loadAddon(new CanvasAddon.CanvasAddon());
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.loadAddon(new Unicode11Addon.Unicode11Addon());
  term.unicode.activeVersion = '11';
  term.loadAddon(new WebLinksAddon.WebLinksAddon((_event, uri) => openLink(uri)));
  term.open(screenEl);
  fit.fit();
  term.focus();

  // Titles from the shell are text, and document.title treats them as text.
  term.onTitleChange((title) => {
    document.title = title ? `${title.slice(0, 100)} · ${baseTitle}` : baseTitle;
  });

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

  /** Writes a dim line after the output already queued, on a line of its own. */
  function notice(text) {
    // The empty write's callback runs once everything queued before it is parsed, so the
    // cursor read there is where the notice goes.
    term.write('', () => {
      term.write((term.buffer.active.cursorX > 0 ? '\r\n' : '') + dimLine(text));
    });
  }

  // ---- the connection ----

  let socket = null;
  /** `ready` has arrived on the current socket: input, resize and acks may flow. */
  let live = false;
  let exited = false;
  /** Connections that failed since the last `ready`, for the backoff. */
  let attempt = 0;
  /** Offset just past the last output byte handed to xterm; the next `hello` sends it. */
  let received = 0;
  /** Offset just past the last byte xterm has finished parsing. */
  let rendered = 0;
  /** The last offset acknowledged (or announced by `hello`) on the current socket. */
  let acked = 0;
  /** The size the last `hello` announced. */
  let helloSize = { cols: 0, rows: 0 };
  let ackTimer = 0;
  let connectTimer = 0;
  let reconnectTimer = 0;
  let countdownTimer = 0;
  let connection = 'connecting';

  function setConnection(state, seconds) {
    connection = state;
    statusEl.dataset.connection = state;
    statusEl.textContent = messages.connection(state, seconds);
  }

  /** Sends one message if the socket is open; returns whether it went out. */
  function send(message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(message);
    return true;
  }

  function connect() {
    clearReconnect();
    setConnection('connecting');

    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // Same origin, so the session cookie authenticates the socket; no token in the URL.
    const url = `${scheme}//${location.host}${wsPath}?session=${encodeURIComponent(session)}`;
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    socket = ws;
    connectTimer = setTimeout(() => ws.close(), CONNECT_TIMEOUT_MS);

    ws.onopen = () => {
      // The agent counts what `hello` says we hold as delivered, so acks restart from it.
      acked = received;
      helloSize = { cols: term.cols, rows: term.rows };
      ws.send(wire.hello(received, term.cols, term.rows));
    };
    ws.onmessage = (event) => {
      if (ws === socket) receive(event.data);
    };
    ws.onclose = () => {
      if (ws !== socket) return;
      clearTimeout(connectTimer);
      socket = null;
      live = false;
      if (exited) setConnection('exited');
      else scheduleReconnect();
    };
  }

  function receive(data) {
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
        return onReady(message);
      case 'output':
        return onOutput(message);
      case 'ping':
        send(wire.pong(message.nonce));
        return;
      case 'pong':
        return; // This page sends no pings.
      case 'exit':
        return onExit(message.status);
      case 'error':
        return notice(messages.error(message.text));
      default:
        console.warn(`sam: ignoring a message of unknown type ${message.code}`);
    }
  }

  function onReady({ offset, lost }) {
    clearTimeout(connectTimer);
    live = true;
    attempt = 0;
    setConnection('connected');

    if (lost > 0 || offset !== received) {
      // Start the screen over: either the agent no longer holds everything this page
      // missed, or its stream is not the one on screen (a new shell under this session's
      // name answers from its own start). ESC c is a full reset, written rather than
      // term.reset() so output still queued in xterm is parsed before it, and the notice
      // goes with it so replayed output cannot come first.
      if (lost === 0) console.warn(`sam: agent resumes at ${offset}, this page holds ${received}`);
      term.write(`\x1bc${lost > 0 ? dimLine(messages.lost(lost)) : ''}`);
      received = rendered = acked = offset;
    }

    // The window may have changed size while the socket was opening.
    if (term.cols !== helloSize.cols || term.rows !== helloSize.rows) {
      send(wire.resize(term.cols, term.rows));
    }
  }

  function onOutput({ offset, data }) {
    const end = offset + data.length;
    if (end <= received) return; // Already written: a duplicate.
    if (offset > received) console.warn(`sam: output jumps from ${received} to ${offset}`);
    const fresh = offset < received ? data.subarray(received - offset) : data;
    received = end;
    // xterm decodes UTF-8 as a stream, so a character split across frames comes out whole.
    term.write(fresh, () => onRendered(end));
  }

  function onRendered(end) {
    // Callbacks of output written before a reset may arrive late with older offsets.
    rendered = Math.max(rendered, end);
    if (rendered - acked >= ACK_EVERY_BYTES) flushAck();
    else if (!ackTimer) ackTimer = setTimeout(flushAck, ACK_IDLE_MS);
  }

  function flushAck() {
    clearTimeout(ackTimer);
    ackTimer = 0;
    if (live && rendered > acked && send(wire.ack(rendered))) acked = rendered;
  }

  function onExit(status) {
    exited = true;
    live = false;
    forgetSession();
    notice(messages.exit(status));
    // A dead shell takes no keys; hiding the cursor says so too.
    term.options.disableStdin = true;
    term.write('\x1b[?25l');
    setConnection('exited');
  }

  function scheduleReconnect() {
    // Half of each wait is fixed and half random ("equal jitter"): pages that lost sam at
    // the same moment spread out, and none retries in a tight loop.
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    const at = Date.now() + delay;
    attempt += 1;

    const tick = () => {
      setConnection('reconnecting', Math.max(1, Math.ceil((at - Date.now()) / 1000)));
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
    reconnectTimer = setTimeout(connect, delay);
  }

  function clearReconnect() {
    clearTimeout(reconnectTimer);
    clearInterval(countdownTimer);
    reconnectTimer = countdownTimer = 0;
  }

  /** Skips the rest of a backoff wait when the network or the tab comes back. */
  function reconnectNow() {
    if (reconnectTimer) connect();
  }

  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') reconnectNow();
  });

  // ---- input ----

  const encoder = new TextEncoder();
  let ctrlArmed = false;

  /**
   * Input typed while the socket is down is dropped: keys typed blind and replayed into a
   * shell later would surprise more than they help.
   */
  function sendInput(bytes) {
    if (!live) return;
    for (let at = 0; at < bytes.length; at += INPUT_CHUNK_BYTES) {
      send(wire.input(bytes.subarray(at, at + INPUT_CHUNK_BYTES)));
    }
  }

  term.onData((data) => sendInput(encoder.encode(applyCtrl(data))));
  // onBinary carries bytes as one char per byte (some mouse reports).
  term.onBinary((data) => sendInput(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));

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

  function keySequence(key) {
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
    if (!button) return;
    const key = button.dataset.key;
    if (key === 'ctrl') {
      setCtrl(!ctrlArmed);
    } else {
      sendInput(encoder.encode(keySequence(key)));
      setCtrl(false);
    }
    term.focus();
  });

  // ---- size ----

  // Watching the element, not just the window, also catches the key bar and the
  // on-screen keyboard changing the space left for the terminal.
  let fitTimer = 0;
  new ResizeObserver(() => {
    clearTimeout(fitTimer);
    fitTimer = setTimeout(() => fit.fit(), RESIZE_DEBOUNCE_MS);
  }).observe(screenEl);
  term.onResize(({ cols, rows }) => {
    if (live) send(wire.resize(cols, rows));
  });

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
    term,
    session,
    /** 'connecting', 'connected', 'reconnecting' or 'exited'. */
    state: () => connection,
    /** Offset just past the last output byte written to the terminal. */
    offset: () => received,
  });

  connect();
})();
