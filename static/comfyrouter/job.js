// The live job page: state, queue position, progress, latent previews and the final images.
"use strict";

(function () {
  const { el } = window.Live;
  const root = document.getElementById("job");
  const jobId = root.dataset.jobId;
  const $ = (id) => document.getElementById(id);
  const preview = $("preview");
  let previewUrl = null;
  let drawn = 0;
  let link = null;

  function setState(state) {
    root.dataset.state = state;
    $("state").dataset.state = state;
    $("state").textContent = state;
    $("queue").hidden = state !== "queued";
    if (state === "queued") $("placeholder-text").textContent = "Waiting for a free GPU…";
    if (state === "assigned" || state === "running") $("placeholder-text").textContent = "Starting on the GPU…";
  }

  function setQueuePosition(position) {
    if (position === null || position === undefined) return;
    $("queue-position").textContent = position === 0 ? "no" : String(position);
  }

  // Titles carry ComfyRouter's parameter tags ("KSampler [seed:seed]"); people want the name.
  function cleanTitle(title) { return (title || "").replace(/\s*\[[^\]]*\]/g, "").trim(); }

  function nodeLabel(node, title) {
    const name = cleanTitle(title);
    return name ? `${name} (node ${node})` : `node ${node}`;
  }

  function setProgress({ value, max, node, node_title: title }) {
    const percent = max ? Math.min(100, Math.round((100 * value) / max)) : 0;
    $("progress-bar").style.width = `${percent}%`;
    $("progress").setAttribute("aria-valuenow", String(percent));
    $("percent").textContent = `${percent}%`;
    $("step-label").textContent = max ? `Step ${value} / ${max}` : "Step –";
    if (node) $("current-node").textContent = `Running: ${nodeLabel(node, title)}`;
  }

  function drawPreview(data, ws) {
    const url = URL.createObjectURL(new Blob([data], { type: "image/jpeg" }));
    // Acknowledge once drawn: the server then sends the newest frame, never a backlog.
    preview.onload = preview.onerror = () => ws.send('{"type":"ack"}');
    preview.src = url;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = url;
    drawn += 1;
    preview.dataset.previewsDrawn = String(drawn);
    preview.dataset.previewSeq = String(drawn);
    preview.hidden = false;
    $("preview-placeholder").hidden = true;
  }

  function showOutputs(outputs) {
    if (!outputs || !outputs.length) return;
    const figures = outputs.map((o) => el("figure", { class: "output" },
      el("a", { href: o.url, target: "_blank", rel: "noopener" }, el("img", { src: o.url, alt: o.filename })),
      el("figcaption", {}, el("span", { class: "mono", text: o.filename }), " ",
        el("a", { class: "button", href: o.download_url, text: "Download" }))));
    $("outputs").replaceChildren(...figures);
    $("outputs-card").hidden = false;
    const last = outputs[outputs.length - 1];
    preview.hidden = false;
    $("preview-placeholder").hidden = true;
    preview.onload = preview.onerror = null;
    preview.src = last.url;
  }

  function showFailure(title, message) {
    $("failure-title").textContent = title;
    $("failure-message").textContent = message || "";
    $("failure").hidden = false;
    $("placeholder-text").textContent = title;
  }

  function finish(state) {
    setState(state);
    if (link) link.stop(state);
  }

  const handlers = {
    snapshot(m) {
      setState(m.state);
      setQueuePosition(m.queue_position);
      setProgress(m.progress);
      if (m.node) $("node-name").textContent = m.node;
      if (m.state === "succeeded") handlers.done(m);
      if (m.state === "failed") handlers.failed({ ...m, node: m.error_node, node_title: m.error_node_title });
      if (m.state === "cancelled") handlers.cancelled(m);
    },
    state(m) {
      setState(m.state);
      setQueuePosition(m.queue_position);
      if (m.node) $("node-name").textContent = m.node;
    },
    progress(m) { if (root.dataset.state !== "running") setState("running"); setProgress(m); },
    preview(m, ws) { drawPreview(Uint8Array.from(atob(m.image), (c) => c.charCodeAt(0)), ws); },
    done(m) {
      $("progress-bar").style.width = "100%";
      $("progress").setAttribute("aria-valuenow", "100");
      $("percent").textContent = "100%";
      $("current-node").textContent = "Finished";
      showOutputs(m.outputs);
      finish(m.state);
    },
    failed(m) {
      const where = m.node ? ` at ${nodeLabel(m.node, m.node_title)}` : "";
      $("current-node").textContent = `Stopped${where}`;
      showFailure(`The job failed${where}`, m.error);
      finish(m.state);
    },
    cancelled(m) { $("current-node").textContent = "Stopped"; showFailure("Cancelled", m.error); finish(m.state); },
  };

  function onMessage(data, ws) {
    if (typeof data !== "string") { drawPreview(data, ws); return; }
    const message = JSON.parse(data);
    const handler = handlers[message.type];
    if (handler) handler(message, ws);
  }

  link = window.Live.socket(`/ws/jobs/${jobId}/`, {
    onMessage,
    finalCodes: [4404],
    onFinalClose: () => showFailure("Unknown job", "No job has this id (it may have been purged)."),
  });
})();
