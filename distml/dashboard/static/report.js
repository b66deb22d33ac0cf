// The standalone performance report: draws the data embedded in the page with common.js.
"use strict";

function renderReport(data) {
  const span = Math.max(1e-9, data.end - data.start);
  $("report-title").textContent = data.title;
  $("report-range").textContent = new Date(data.start * 1000).toISOString().replace("T", " ")
    .slice(0, 19) + " UTC, " + duration(span) + " on " + data.scheduler;
  const threads = data.workers.reduce((n, w) => n + w.nthreads, 0);
  const figures = [
    ["tasks", data.tasks], ["failed", data.failed],
    ["tasks / s", (data.tasks / span).toFixed(data.tasks / span < 10 ? 1 : 0)],
    ["duration", duration(span)], ["compute time", duration(data.compute_seconds)],
    ["workers", data.workers.length], ["threads", threads],
    ["threads busy", (data.busy_fraction * 100).toFixed(0) + " %"]];
  $("summary").replaceChildren(...figures.map(([label, value]) =>
    el("div", {"data-figure": label}, el("b", {}, value), el("span", {class: "muted"}, label))));
  $("incomplete").hidden = data.task_stream_complete;

  const kinds = drawTaskStream($("task-stream"), data.task_stream, data.workers, data.start, data.end);
  $("legend").replaceChildren(...[...kinds.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30)
    .map(([prefix, n]) => swatchLabel(prefix, prefix + " (" + n + ")")));

  const longest = Math.max(1e-9, ...data.kinds.map(k => k.seconds));
  $("kinds").tBodies[0].replaceChildren(...data.kinds.map(k => {
    const name = el("td", {}, swatchLabel(k.kind, k.kind));
    return el("tr", {"data-kind": k.kind}, name, el("td", {class: "num"}, k.count),
      el("td", {class: "num"}, k.failed), el("td", {class: "num"}, duration(k.seconds)),
      el("td", {class: "num"}, duration(k.mean)), el("td", {class: "num"}, duration(k.max)),
      el("td", {}, stackedBar([[k.seconds, colour(k.kind)]], longest)));
  }));

  $("workers").tBodies[0].replaceChildren(...data.workers.map(w => el("tr", {},
    el("td", {}, w.name), el("td", {class: "num"}, w.nthreads), el("td", {class: "num"}, w.tasks),
    el("td", {class: "num"}, duration(w.seconds)),
    el("td", {}, stackedBar([[w.seconds, "var(--processing)"]], span * w.nthreads)))));

  drawMemory($("memory-chart"), $("memory-legend"), data.memory, data.workers);
  document.body.dataset.rendered = "1";
}

renderReport(JSON.parse(document.getElementById("report-data").textContent));
