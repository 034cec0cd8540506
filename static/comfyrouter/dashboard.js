// The operator dashboard: nodes, queue and recent jobs, updated live over /ws/dashboard/.
"use strict";

(function () {
  const { el, shortId, ago, bytes } = window.Live;
  const $ = (id) => document.getElementById(id);
  const recent = new Map(); // job id -> row, newest first
  const MAX_RECENT = 20;
  let toastTimer = null;

  function chip(status) { return el("span", { class: "badge", "data-state": status, text: status }); }

  function bar(fraction, label) {
    const percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    return el("div", { class: "meter", title: label, role: "meter", "aria-valuenow": String(percent) },
      el("div", { class: "bar", style: `width:${percent}%` }));
  }

  function jobLink(job) {
    const progress = job.max ? ` ${job.value}/${job.max}` : "";
    return el("li", {}, el("a", { href: `/jobs/${job.id}/`, class: "mono", text: shortId(job.id) }), ` ${job.state}${progress}`);
  }

  function nodeCard(node) {
    const used = node.vram_total ? node.vram_total - node.vram_free : 0;
    const vram = node.vram_total ? `${bytes(used)} / ${bytes(node.vram_total)}` : "–";
    return el("article", { class: "card node", "data-node": node.name, "data-status": node.status },
      el("header", {}, el("a", { href: node.admin_url, class: "node-name", text: node.name }), chip(node.status)),
      el("dl", { class: "facts" },
        el("dt", { text: "Slots" }), el("dd", { text: `${node.running} / ${node.capacity}` }),
        el("dt", { text: "GPU" }), el("dd", { text: node.gpu || "–" }),
        el("dt", { text: "VRAM" }), el("dd", {}, vram, node.vram_total ? bar(used / node.vram_total, vram) : null),
        el("dt", { text: "Node queue" }), el("dd", { text: String(node.queue_remaining || 0) })),
      node.jobs.length ? el("ul", { class: "current-jobs" }, node.jobs.map(jobLink)) : el("p", { class: "muted small", text: "No job" }),
      node.status === "offline" && node.last_error ? el("p", { class: "error small", text: node.last_error }) : null);
  }

  function renderFleet(fleet) {
    const nodes = fleet.nodes;
    $("nodes").replaceChildren(...(nodes.length ? nodes.map(nodeCard)
      : [el("p", { class: "muted" }, "No node yet — ", el("a", { href: "/admin/nodes/node/add/", text: "add one" }), ".")]));
    const online = nodes.filter((n) => n.status === "idle" || n.status === "busy").length;
    $("tile-online").textContent = `${online} / ${nodes.length}`;
    $("tile-queue").textContent = String(fleet.queue.length);
    $("tile-running").textContent = String(nodes.reduce((sum, n) => sum + n.jobs.length, 0));
    $("tile-rate").textContent = String(fleet.queue.jobs_per_minute);
    $("queue-count").textContent = fleet.queue.length ? `(${fleet.queue.length})` : "";
    const head = fleet.queue.head.map((job) => el("li", {},
      el("a", { href: job.page_url, class: "mono", text: shortId(job.id) }),
      el("span", { class: "muted small", text: ` priority ${job.priority} · ${ago(job.created_at)}` })));
    $("queue-list").replaceChildren(...(head.length ? head : [el("li", { class: "muted", text: "Empty" })]));
  }

  function jobItem(job) {
    const thumb = job.thumbnail_url
      ? el("img", { src: job.thumbnail_url, alt: "", loading: "lazy", class: "thumb" })
      : el("div", { class: "thumb empty", "data-state": job.state });
    const progress = job.progress.max ? `${job.progress.value}/${job.progress.max}` : "";
    return el("li", { class: "job-row", "data-job": job.id, "data-state": job.state },
      el("a", { href: job.page_url, class: "thumb-link" }, thumb),
      el("div", { class: "job-main" },
        el("a", { href: job.page_url, class: "mono", text: shortId(job.id) }),
        el("span", { class: "muted small", text: ` ${job.node || "no node"} · ${ago(job.created_at)} ${progress}` }),
        job.error && job.state === "failed" ? el("p", { class: "error small", text: job.error }) : null),
      chip(job.state),
      el("a", { href: job.admin_url, class: "small", text: "admin" }));
  }

  function renderJobs() {
    $("jobs").replaceChildren(...(recent.size ? [...recent.values()].map(jobItem) : [el("li", { class: "muted", text: "No job yet" })]));
  }

  function toast(text) {
    const box = $("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 4000);
  }

  const handlers = {
    fleet: renderFleet,
    jobs(m) { recent.clear(); m.jobs.forEach((job) => recent.set(job.id, job)); renderJobs(); },
    job(m) {
      recent.delete(m.job.id);
      const rows = [[m.job.id, m.job], ...recent.entries()].slice(0, MAX_RECENT);
      recent.clear();
      rows.forEach(([id, job]) => recent.set(id, job));
      renderJobs();
    },
    "node.status"(m) { toast(`Node ${m.name}: ${m.old} → ${m.status}`); },
  };

  window.Live.socket("/ws/dashboard/", {
    onMessage(data) {
      const message = JSON.parse(data);
      const handler = handlers[message.type];
      if (handler) handler(message);
    },
    finalCodes: [4403],
    onFinalClose: () => { location.href = `/admin/login/?next=${encodeURIComponent(location.pathname)}`; },
  });
})();
