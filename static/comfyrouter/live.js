// Shared by the live pages: DOM building without innerHTML, and a WebSocket that reconnects.
"use strict";

window.Live = (function () {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setConnection(state, label) {
    const badge = document.getElementById("conn");
    if (!badge) return;
    badge.dataset.state = state;
    badge.textContent = label;
  }

  // Opens `path`, hands every message to onMessage, and reconnects with backoff until stop() or a
  // close code in `finalCodes` (the server's "no such job" / "not allowed").
  function socket(path, { onMessage, onFinalClose, finalCodes = [] }) {
    let ws = null;
    let attempt = 0;
    let stopped = false;
    const scheme = location.protocol === "https:" ? "wss" : "ws";

    function open() {
      ws = new WebSocket(`${scheme}://${location.host}${path}`);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => { attempt = 0; setConnection("live", "live"); };
      ws.onmessage = (event) => onMessage(event.data, ws);
      ws.onclose = (event) => {
        if (stopped) return;
        if (finalCodes.includes(event.code)) { setConnection("ended", "offline"); onFinalClose && onFinalClose(event.code); return; }
        setConnection("retry", "reconnecting…");
        attempt += 1;
        setTimeout(open, Math.min(10000, 300 * 2 ** attempt));
      };
    }

    open();
    return {
      stop(label) { stopped = true; setConnection("ended", label || "finished"); if (ws) ws.close(1000); },
      send(message) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message)); },
    };
  }

  function shortId(id) { return String(id).slice(0, 8); }

  function ago(iso) {
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return `${Math.round(seconds)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    return `${Math.round(seconds / 3600)} h ago`;
  }

  function bytes(n) {
    if (!n) return "–";
    const gib = n / 1024 ** 3;
    return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`;
  }

  return { el, socket, shortId, ago, bytes, setConnection };
})();
