// The live dashboard: polls the scheduler's JSON API once a second and draws with the helpers
// of common.js (loaded first).
"use strict";

const POLL_MS = 1000;
const STREAM_WINDOW_S = 30;
const MEMORY_EVERY = 5;

const live = {
  records: [],          // [start, stop, worker, key, prefix, status], newest last
  lastStop: 0,
  workers: [],
  offset: 0,            // scheduler clock minus browser clock, seconds
  rate: [],             // [time, tasks_recorded] of the last polls
};

async function getJSON(path) {
  const response = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function setConnection(ok, text) {
  const node = $("connection");
  node.className = "connection " + (ok ? "ok" : "lost");
  node.textContent = text;
}

function renderWorkers(data) {
  live.workers = data.workers;
  const sched = data.scheduler;
  $("scheduler-address").textContent = sched.address;
  $("stat-workers").textContent = sched.workers;
  $("stat-threads").textContent = data.workers.reduce((n, w) => n + w.nthreads, 0);
  $("stat-tasks").textContent = sched.tasks;
  $("stat-clients").textContent = sched.clients;
  $("stat-uptime").textContent = duration(sched.uptime);
  live.rate.push([data.time, sched.tasks_recorded]);
  while (live.rate.length > 6) live.rate.shift();
  if (live.rate.length > 1) {
    const [t0, n0] = live.rate[0], [t1, n1] = live.rate[live.rate.length - 1];
    $("stat-rate").textContent = t1 > t0 ? Math.round((n1 - n0) / (t1 - t0)) : "–";
  }
  $("workers").tBodies[0].replaceChildren(...data.workers.map(w => {
    const limit = w.memory_limit || 0;
    const hot = limit && w.memory / limit > 0.8;
    const bar = stackedBar([[w.memory, hot ? "var(--erred)" : "var(--memory)"]], limit || w.memory);
    const memText = bytes(w.memory) + (limit ? " / " + bytes(limit) : "");
    const badge = el("span", {class: w.paused ? "badge paused" : "badge"},
                     w.paused ? "paused" : "running");
    return el("tr", {"data-worker": w.address},
      el("td", {}, w.name), el("td", {class: "muted"}, w.address),
      el("td", {class: "num"}, w.nthreads),
      el("td", {}, el("div", {class: "memcell"}, bar, el("span", {class: "bar-label"}, memText))),
      el("td", {class: "num"}, bytes(w.managed)), el("td", {class: "num"}, bytes(w.spilled)),
      el("td", {class: "num"}, w.executing), el("td", {class: "num"}, w.processing),
      el("td", {class: "num"}, w.keys), el("td", {}, badge));
  }));
  $("no-workers").hidden = data.workers.length > 0;
}

function renderStream(data) {
  live.offset = data.time - Date.now() / 1000;
  for (const r of data.records) if (r[1] > live.lastStop) live.records.push(r);
  for (const r of data.records) live.lastStop = Math.max(live.lastStop, r[1]);
  const horizon = data.time - STREAM_WINDOW_S;
  let drop = 0;
  while (drop < live.records.length && live.records[drop][1] < horizon) drop++;
  if (drop) live.records.splice(0, drop);
  const now = Date.now() / 1000 + live.offset;
  const kinds = drawTaskStream($("task-stream"), live.records, live.workers,
                               now - STREAM_WINDOW_S, now);
  $("legend").replaceChildren(...[...kinds.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20)
    .map(([prefix, n]) => swatchLabel(prefix, prefix + " (" + n + ")")));
}

function renderProgress(data) {
  const rows = data.prefixes.map(p => {
    const bar = stackedBar([[p.done, "var(--done)"], [p.erred, "var(--erred)"],
                            [p.processing, "var(--processing)"], [p.waiting, "var(--waiting)"]],
                           p.total);
    const detail = p.done + " / " + p.total + (p.erred ? ", " + p.erred + " failed" : "") +
      (p.processing ? ", " + p.processing + " running" : "");
    return el("div", {class: "prefix-row", "data-prefix": p.prefix},
      el("div", {class: "prefix-head"}, el("span", {class: "name"}, p.prefix),
         el("span", {class: "muted"}, detail)), bar);
  });
  $("progress").replaceChildren(...rows);
  $("no-progress").hidden = rows.length > 0;
}

function renderActivities(data) {
  const cards = data.activities.map(a => {
    const f = a.fields;
    const card = el("div", {class: "activity", "data-activity": a.name},
      el("div", {class: "title"}, a.name,
         el("span", {class: "muted small"}, "  started " +
            duration(Math.max(0, data.time - a.started)) + " ago, updated " +
            duration(Math.max(0, data.time - a.updated)) + " ago")));
    if (typeof f.done === "number" && typeof f.total === "number" && f.total > 0) {
      card.append(stackedBar([[Math.min(f.done, f.total), "var(--done)"]], f.total));
    }
    const list = el("dl");
    for (const [name, value] of Object.entries(f)) {
      const shown = typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(4) : value;
      list.append(el("dt", {}, name), el("dd", {}, shown === null ? "–" : shown));
    }
    card.append(list);
    return card;
  });
  $("activities").replaceChildren(...cards);
  $("no-activities").hidden = cards.length > 0;
}

let polls = 0;

async function poll() {
  try {
    const memoryDue = polls++ % MEMORY_EVERY === 0;  // a 2-minute chart: every few polls
    const [workers, tasks, stream, activities, memory] = await Promise.all([
      getJSON("/api/v1/workers"), getJSON("/api/v1/tasks"),
      getJSON("/api/v1/task-stream?since=" + live.lastStop), getJSON("/api/v1/activities"),
      memoryDue ? getJSON("/api/v1/memory") : null]);
    renderWorkers(workers);
    renderStream(stream);
    renderProgress(tasks);
    renderActivities(activities);
    if (memory) drawMemory($("memory-chart"), $("memory-legend"), memory.samples, live.workers);
    setConnection(true, "live");
    document.body.dataset.updated = String(workers.time);
  } catch (err) {
    setConnection(false, "scheduler unreachable");
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("stream-window").textContent = STREAM_WINDOW_S;
  poll();
});
