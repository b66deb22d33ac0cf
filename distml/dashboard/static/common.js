// Drawing helpers shared by the live dashboard and the standalone performance report (which
// inlines this file). Values from the cluster always go in as text, never as HTML: task keys and
// activity fields are user-chosen strings.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value; else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function duration(s) {
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms";
  if (s < 60) return s.toFixed(s < 10 && !Number.isInteger(s) ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

// A stable colour per name (task kind, worker): hue from a string hash.
const colours = new Map();
function colour(name) {
  let c = colours.get(name);
  if (!c) {
    let h = 2166136261;
    for (let i = 0; i < name.length; i++) { h ^= name.charCodeAt(i); h = Math.imul(h, 16777619); }
    c = "hsl(" + ((h >>> 0) % 360) + ", 62%, 52%)";
    colours.set(name, c);
  }
  return c;
}

function swatchLabel(name, text) {
  const swatch = el("i");
  swatch.style.background = colour(name);
  return el("span", {}, swatch, text);
}

// Task stream on a canvas: one lane per worker thread, records [start, stop, worker, key,
// prefix, status] between t0 and t1 (seconds). Returns the count of drawn records per kind.
function drawTaskStream(canvas, records, workers, t0, t1) {
  const lanes = [];
  const laneOf = new Map();
  const threads = new Map();
  for (const w of workers) {
    laneOf.set(w.address, lanes.length);
    threads.set(w.address, w.nthreads);
    for (let i = 0; i < w.nthreads; i++) lanes.push(w.address);
  }
  const laneHeight = Math.max(8, Math.min(28, Math.floor(220 / Math.max(1, lanes.length))));
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 800;
  const height = Math.max(60, lanes.length * (laneHeight + 3) + 24);
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const labelWidth = 90;
  const span = Math.max(1e-6, t1 - t0);
  const x = t => labelWidth + (t - t0) / span * (width - labelWidth - 6);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7385";
  for (const w of workers) {
    ctx.fillText(w.name.slice(0, 14), 4, laneOf.get(w.address) * (laneHeight + 3) + laneHeight - 2);
  }
  ctx.strokeStyle = "#e2e5ea";
  const step = niceStep(span / 6);
  for (let s = 0; s <= span + 1e-9; s += step) {
    const gx = x(t1 - s);
    ctx.beginPath(); ctx.moveTo(gx, 0); ctx.lineTo(gx, height - 16); ctx.stroke();
    ctx.fillText(s === 0 ? "end" : "-" + duration(s), Math.max(labelWidth, gx - 14), height - 4);
  }
  // A worker's records share its lanes: each goes in the first lane free at its start.
  const laneEnd = new Map();
  const kinds = new Map();
  for (const [start, stop, worker, , prefix, status] of records) {
    if (stop < t0 || !laneOf.has(worker)) continue;
    const first = laneOf.get(worker);
    let lane = first;
    for (let i = 0; i < threads.get(worker); i++) {
      const end = laneEnd.get(first + i) || 0;
      if (end <= start) { lane = first + i; break; }
      if (end < (laneEnd.get(lane) || 0)) lane = first + i;
    }
    laneEnd.set(lane, stop);
    ctx.fillStyle = status === "error" ? "#d64545" : colour(prefix);
    const x0 = x(Math.max(start, t0));
    ctx.fillRect(x0, lane * (laneHeight + 3), Math.max(1, x(stop) - x0), laneHeight);
    kinds.set(prefix, (kinds.get(prefix) || 0) + 1);
  }
  return kinds;
}

function niceStep(raw) {
  const steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
                 60, 120, 300, 600, 1800, 3600];
  return steps.find(s => s >= raw) || 7200;
}

// Resident memory per worker over time as SVG lines; samples are [time, {worker: [rss, managed,
// spilled, executing]}]. Fills ``legend`` with each worker's latest figures.
function drawMemory(svg, legend, samples, workers) {
  svg.replaceChildren();
  legend.replaceChildren();
  // a worker's figures are 0 until its first heartbeat: leave those out
  samples = samples.map(([t, s]) => [t, Object.fromEntries(
    Object.entries(s).filter(([, v]) => v[0] > 0))]).filter(([, s]) => Object.keys(s).length);
  if (samples.length < 2) {
    legend.append(el("span", {class: "muted"}, "fewer than two memory samples in this window " +
                                                "(workers report every second)"));
    return;
  }
  const t0 = samples[0][0], t1 = samples[samples.length - 1][0];
  const names = new Map(workers.map(w => [w.address, w.name]));
  let top = 1;
  for (const [, sample] of samples) for (const v of Object.values(sample)) top = Math.max(top, v[0]);
  const X = t => (t - t0) / Math.max(1e-9, t1 - t0) * 800;
  const Y = v => 155 - v / top * 140;
  const addresses = [...new Set(samples.flatMap(([, s]) => Object.keys(s)))].sort();
  for (const address of addresses) {
    const points = samples.filter(([, s]) => address in s)
      .map(([t, s]) => X(t).toFixed(1) + "," + Y(s[address][0]).toFixed(1));
    svg.append(svgEl("polyline", {points: points.join(" "), fill: "none",
                                  stroke: colour(address), "stroke-width": 2,
                                  "vector-effect": "non-scaling-stroke"}));
    let peak = 0, spilled = 0;
    for (const [, s] of samples) if (address in s) { peak = Math.max(peak, s[address][0]); spilled = s[address][2]; }
    legend.append(swatchLabel(address, (names.get(address) || address) + ": peak " + bytes(peak) +
                              (spilled ? ", spilled " + bytes(spilled) : "")));
  }
  legend.prepend(el("span", {class: "muted"}, "scale 0 – " + bytes(top)));
}

// A horizontal stacked bar of parts [[value, css colour], ...] out of total.
function stackedBar(parts, total) {
  const bar = el("div", {class: "bar"});
  let left = 0;
  for (const [value, css] of parts) {
    const share = total ? value / total * 100 : 0;
    const span = el("span");
    span.style.left = left + "%";
    span.style.width = Math.min(100 - left, share) + "%";
    span.style.background = css;
    bar.append(span);
    left += share;
  }
  return bar;
}
