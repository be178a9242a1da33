// The Latent map's time-lapse (issue 18): every test image's codes at every snapshot, in one
// projection, drawn with WebGL; a play button and a slider step through the snapshots with
// the points moving smoothly (the GPU interpolates between two frames' positions); the
// image shows when the pointer rests on a point; a click tells the server (which decodes it).
//
// A Streamlit custom component without a build step, speaking the component protocol by
// postMessage itself, as components/traversal does. It also runs on its own: the map's HTML
// export (latentmap_panel.py) inlines this file with its data in window.LATENT_MAP.
//
// Render args: state (changes with the map), data (URL of the packed points, relative to
// this folder) or dataBase64, layout {xy, index, group, task, label: [byte offset, count]},
// n, s (frames), g (group rows: 1, or s when groups change per frame), frames [labels],
// frame (the frame to show: the sidebar's snapshot), groups [{name, color}], tasks [names],
// classes [[names] per task], atlas {urls, tile [h, w], cols, per_page} | null, selected,
// scale {title, lo, hi} | absent: the groups are bins of a continuous value (a direction's t,
// direction_panel.py), drawn as one colour bar instead of legend buttons.

const TRANSITION_MS = 1100; // one snapshot to the next while playing
const HOLD_MS = 450; // a pause at each snapshot
const PICK_PX = 8; // how near the pointer a point must be to be picked
const $ = (id) => document.getElementById(id);

function post(type, data = {}) {
  window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
}

// Everything a test or the benchmark reads (tests/e2e/test_browser_latent_map.py).
const map = {
  state: null,
  n: 0,
  s: 0,
  pos: 0, // the frame shown, fractional between two snapshots
  playing: false,
  renderer: null, // "webgl" | "canvas"
  paints: 0,
  drawn: [], // the distinct positions painted while playing (fractional ones included)
  hovered: -1,
  selected: -1,
  sent: [],
  failed: null,
  timing: {}, // ms since navigation: args, data, first paint
  shown: null, // {n, at: epoch ms}: when the last map's points were first drawn
};
window.latentMap = map;
const mark = (what) => (map.timing[what] ??= performance.now());
mark("script"); // this module running: the frame's page and its files are in

let spec = null; // the last render args
let fresh = false; // new points installed, not drawn yet
let arrays = null; // typed views of the packed points
let hidden = new Set(); // groups switched off in the legend
const view = { cx: 0, cy: 0, k: 1 }; // data -> pixels: (p - c) * k about the canvas centre
let bbox = null;

// -- drawing --------------------------------------------------------------------------------
const canvas = $("plot");
const gl = canvas.getContext("webgl", { antialias: true, preserveDrawingBuffer: true });
const ctx2d = gl ? null : canvas.getContext("2d");
map.renderer = gl ? "webgl" : "canvas";
let prog = null;
const loc = {};
let xyBuffers = [];
let colourBuffers = [];
let colours = []; // per group row: Uint8Array RGBA [n * 4]
const marks = gl ? gl.createBuffer() : null;
// Earlier tasks are drawn on top (points come in task order): what happens to task 0's codes
// while later tasks are learnt is what the time-lapse is for.
const bigIndexes = gl ? gl.getExtension("OES_element_index_uint") : null;
let order = null;

const VERTEX = `
attribute vec2 a_from; attribute vec2 a_to; attribute vec4 a_colour;
uniform float u_t; uniform vec2 u_scale; uniform vec2 u_offset; uniform float u_size;
varying vec4 v_colour;
void main() {
  vec2 p = mix(a_from, a_to, u_t);
  gl_Position = a_colour.a == 0.0 ? vec4(2.0, 2.0, 2.0, 1.0)
                                  : vec4(p * u_scale + u_offset, 0.0, 1.0);
  gl_PointSize = u_size;
  v_colour = a_colour;
}`;
const FRAGMENT = `
precision mediump float;
varying vec4 v_colour;
void main() {
  vec2 d = gl_PointCoord - 0.5;
  if (dot(d, d) > 0.25) discard;
  gl_FragColor = vec4(v_colour.rgb * v_colour.a, v_colour.a); // premultiplied, as the page is
}`;

function compile() {
  const shader = (type, src) => {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  };
  prog = gl.createProgram();
  gl.attachShader(prog, shader(gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, FRAGMENT));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  for (const a of ["a_from", "a_to", "a_colour"]) loc[a] = gl.getAttribLocation(prog, a);
  for (const u of ["u_t", "u_scale", "u_offset", "u_size"]) loc[u] = gl.getUniformLocation(prog, u);
  gl.enable(gl.BLEND);
  gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
}

const ease = (t) => t * t * (3 - 2 * t);

function segment() {
  // (frame a, frame b, eased t) of the current position
  const s = map.s;
  if (s < 2) return [0, 0, 0];
  const a = Math.min(Math.floor(map.pos), s - 2);
  return [a, a + 1, ease(Math.min(1, map.pos - a))];
}

function hexRGB(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function buildColours() {
  const { n, g } = spec;
  const rgb = spec.groups.map((x) => hexRGB(x.color));
  colours = [];
  for (let r = 0; r < g; r++) {
    const out = new Uint8Array(n * 4);
    const ids = arrays.group.subarray(r * n, (r + 1) * n);
    for (let i = 0; i < n; i++) {
      const c = rgb[ids[i]] ?? [128, 128, 128];
      out[4 * i] = c[0];
      out[4 * i + 1] = c[1];
      out[4 * i + 2] = c[2];
      out[4 * i + 3] = hidden.has(ids[i]) ? 0 : 190;
    }
    colours.push(out);
  }
  if (!gl) return;
  colourBuffers.forEach((b) => gl.deleteBuffer(b));
  colourBuffers = colours.map((c) => {
    const b = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, b);
    gl.bufferData(gl.ARRAY_BUFFER, c, gl.STATIC_DRAW);
    return b;
  });
}

function upload() {
  if (!gl) return;
  if (!prog) compile();
  xyBuffers.forEach((b) => gl.deleteBuffer(b));
  xyBuffers = [];
  if (bigIndexes || map.n <= 65536) {
    const idx = bigIndexes ? new Uint32Array(map.n) : new Uint16Array(map.n);
    for (let i = 0; i < map.n; i++) idx[i] = map.n - 1 - i;
    order ??= gl.createBuffer();
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, order);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, idx, gl.STATIC_DRAW);
    order.type = bigIndexes ? gl.UNSIGNED_INT : gl.UNSIGNED_SHORT;
  } else order = null;
  for (let f = 0; f < map.s; f++) {
    const b = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, b);
    gl.bufferData(gl.ARRAY_BUFFER, arrays.xy.subarray(f * map.n * 2, (f + 1) * map.n * 2), gl.STATIC_DRAW);
    xyBuffers.push(b);
  }
}

function sizeCanvas() {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(200, canvas.clientWidth);
  const h = spec?.height ?? 520;
  canvas.style.height = `${h}px`;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
}

function fit() {
  if (!bbox) return;
  const w = canvas.clientWidth || 600;
  const h = spec?.height ?? 520;
  const [x0, y0, x1, y1] = bbox;
  view.cx = (x0 + x1) / 2;
  view.cy = (y0 + y1) / 2;
  // one unit is as long on both axes: distances on the map are the projection's
  view.k = 0.92 * Math.min(w / Math.max(x1 - x0, 1e-9), h / Math.max(y1 - y0, 1e-9));
}

function pointSize() {
  const n = map.n;
  return n > 30000 ? 2.5 : n > 8000 ? 3.5 : n > 2000 ? 5 : 7;
}

function toScreen(x, y) {
  const w = canvas.clientWidth;
  const h = spec.height ?? 520;
  return [(x - view.cx) * view.k + w / 2, h / 2 - (y - view.cy) * view.k];
}

function position(i) {
  const [a, b, t] = segment();
  const xy = arrays.xy;
  const pa = (a * map.n + i) * 2;
  const pb = (b * map.n + i) * 2;
  return [xy[pa] + (xy[pb] - xy[pa]) * t, xy[pa + 1] + (xy[pb + 1] - xy[pa + 1]) * t];
}

function colourRow() {
  const [a, b, t] = segment();
  return Math.min(spec.g - 1, t < 0.5 ? a : b);
}

function draw() {
  if (!arrays) return;
  sizeCanvas();
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = spec.height ?? 520;
  const [a, b, t] = segment();
  const size = pointSize();
  if (gl) {
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.useProgram(prog);
    const sx = (2 * view.k) / w;
    const sy = (2 * view.k) / h;
    gl.uniform2f(loc.u_scale, sx, sy);
    gl.uniform2f(loc.u_offset, -view.cx * sx, -view.cy * sy);
    gl.uniform1f(loc.u_t, t);
    gl.uniform1f(loc.u_size, size * dpr);
    const attrib = (name, buffer, n, type, norm) => {
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.enableVertexAttribArray(loc[name]);
      gl.vertexAttribPointer(loc[name], n, type, norm, 0, 0);
    };
    attrib("a_from", xyBuffers[a], 2, gl.FLOAT, false);
    attrib("a_to", xyBuffers[b], 2, gl.FLOAT, false);
    attrib("a_colour", colourBuffers[colourRow()], 4, gl.UNSIGNED_BYTE, true);
    if (order) {
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, order);
      gl.drawElements(gl.POINTS, map.n, order.type, 0);
    } else gl.drawArrays(gl.POINTS, 0, map.n);
    // the selected and the hovered point: a dark ring under a larger dot of their colour
    const picked = [map.selected, map.hovered].filter((i) => i >= 0 && i < map.n);
    if (picked.length) {
      const pts = new Float32Array(picked.flatMap((i) => position(i)));
      gl.bindBuffer(gl.ARRAY_BUFFER, marks);
      gl.bufferData(gl.ARRAY_BUFFER, pts, gl.DYNAMIC_DRAW);
      attrib("a_from", marks, 2, gl.FLOAT, false);
      attrib("a_to", marks, 2, gl.FLOAT, false);
      gl.disableVertexAttribArray(loc.a_colour);
      gl.uniform1f(loc.u_t, 0);
      gl.vertexAttrib4f(loc.a_colour, 0.1, 0.1, 0.1, 1);
      gl.uniform1f(loc.u_size, (size + 7) * dpr);
      gl.drawArrays(gl.POINTS, 0, picked.length);
      gl.vertexAttrib4f(loc.a_colour, 1, 1, 1, 1);
      gl.uniform1f(loc.u_size, (size + 3) * dpr);
      gl.drawArrays(gl.POINTS, 0, picked.length);
    }
  } else {
    ctx2d.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx2d.clearRect(0, 0, w, h);
    const rgba = colours[colourRow()];
    for (let i = map.n - 1; i >= 0; i--) {
      if (!rgba[4 * i + 3]) continue;
      const [x, y] = toScreen(...position(i));
      ctx2d.fillStyle = `rgb(${rgba[4 * i]},${rgba[4 * i + 1]},${rgba[4 * i + 2]})`;
      ctx2d.fillRect(x - size / 2, y - size / 2, size, size);
    }
    for (const i of [map.selected, map.hovered].filter((i) => i >= 0 && i < map.n)) {
      const [x, y] = toScreen(...position(i));
      ctx2d.strokeStyle = "#222";
      ctx2d.lineWidth = 2;
      ctx2d.strokeRect(x - size, y - size, 2 * size, 2 * size);
    }
  }
  map.paints += 1;
  if (fresh) map.shown = { n: map.n, at: performance.timeOrigin + performance.now() };
  fresh = false;
  if (map.playing) map.drawn.push(map.pos);
  mark("paint");
}

let queued = false;
function schedule() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => {
    queued = false;
    draw();
  });
}

// -- the frame: slider, label, play ----------------------------------------------------------
function setPos(p) {
  map.pos = Math.max(0, Math.min(map.s - 1, p));
  $("frame").value = String(map.pos);
  const k = Math.round(map.pos);
  const between = Math.abs(map.pos - k) > 0.02;
  $("label").textContent = spec.frames[k] + (between ? " …" : "");
  schedule();
  if (map.hovered >= 0) showTip(map.hovered);
}

let last = null;
let holdUntil = 0;
function tick(now) {
  if (!map.playing) return;
  const dt = last === null ? 0 : now - last;
  last = now;
  if (now >= holdUntil) {
    const next = Math.floor(map.pos + 1e-6) + 1;
    let p = map.pos + dt / TRANSITION_MS;
    if (p >= next - 1e-6) {
      p = next;
      holdUntil = now + HOLD_MS;
    }
    setPos(p);
    if (p >= map.s - 1) {
      stop();
      return;
    }
  }
  requestAnimationFrame(tick);
}

function start() {
  if (map.s < 2) return;
  if (map.pos >= map.s - 1 - 1e-6) setPos(0);
  map.playing = true;
  map.drawn = [];
  last = null;
  holdUntil = performance.now() + HOLD_MS / 2;
  $("play").textContent = "⏸ Pause";
  $("play").setAttribute("aria-label", "Pause");
  requestAnimationFrame(tick);
}

function stop() {
  map.playing = false;
  $("play").textContent = "▶ Play";
  $("play").setAttribute("aria-label", "Play");
}

$("play").addEventListener("click", () => (map.playing ? stop() : start()));
$("frame").addEventListener("input", () => {
  stop();
  setPos(parseFloat($("frame").value));
});

// -- legend -----------------------------------------------------------------------------------
function buildLegend() {
  const box = $("legend");
  box.replaceChildren();
  if (spec.scale) {
    scaleLegend(box);
    return;
  }
  spec.groups.forEach((gr, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = hidden.has(i) ? "off" : "";
    const dot = document.createElement("i");
    dot.style.background = gr.color;
    b.append(dot, document.createTextNode(gr.name));
    b.title = "show / hide";
    b.addEventListener("click", () => {
      hidden.has(i) ? hidden.delete(i) : hidden.add(i);
      b.className = hidden.has(i) ? "off" : "";
      buildColours();
      schedule();
    });
    box.append(b);
  });
}

function scaleLegend(box) {
  // a continuous colouring (a direction's t): one colour bar, its ends open, 0 and 1 marked
  const { title, lo, hi } = spec.scale;
  const bar = document.createElement("span");
  bar.className = "scale";
  bar.style.background = `linear-gradient(to right, ${spec.groups.map((g) => g.color).join(", ")})`;
  for (const t of [0, 1]) {
    const tick = document.createElement("b");
    tick.style.left = `${((t - lo) / (hi - lo)) * 100}%`;
    tick.textContent = String(t);
    bar.append(tick);
  }
  const text = (s) => {
    const el = document.createElement("span");
    el.textContent = s;
    return el;
  };
  box.append(text(`≤ ${lo}`), bar, text(`≥ ${hi}`), text(title));
}

// -- pointer: hover image, click, pan and zoom --------------------------------------------------
function pick(px, py) {
  const visible = colours[colourRow()];
  let best = -1;
  let bestD = PICK_PX * PICK_PX;
  const [a, b, t] = segment();
  const xy = arrays.xy;
  const n = map.n;
  const w = canvas.clientWidth;
  const h = spec.height ?? 520;
  for (let i = 0; i < n; i++) {
    if (!visible[4 * i + 3]) continue;
    const pa = (a * n + i) * 2;
    const pb = (b * n + i) * 2;
    const x = (xy[pa] + (xy[pb] - xy[pa]) * t - view.cx) * view.k + w / 2;
    const y = h / 2 - (xy[pa + 1] + (xy[pb + 1] - xy[pa + 1]) * t - view.cy) * view.k;
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}

const pages = new Map(); // atlas page -> Promise<HTMLImageElement>
function atlasPage(p) {
  if (!pages.has(p)) {
    pages.set(
      p,
      new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve(img);
        img.onerror = () => {
          pages.delete(p); // retried on the next hover
          reject(new Error(`atlas page ${p}`));
        };
        img.src = spec.atlas.urls[p];
      }),
    );
  }
  return pages.get(p);
}

function describe(i) {
  const t = arrays.task[i];
  const y = arrays.label[i];
  const cls = spec.classes[t]?.[y] ?? String(y);
  const where = spec.scale ? ` · t ${spec.groups[arrays.group[i]]?.name ?? "?"}` : "";
  return `task ${t}: ${spec.tasks[t]} · ${cls} · image ${arrays.index[i]} (point ${i})${where}`;
}

function showTip(i) {
  const tip = $("tip");
  const [x, y] = toScreen(...position(i));
  $("tiptext").textContent = describe(i);
  const w = canvas.clientWidth;
  tip.hidden = false;
  tip.style.left = `${Math.min(x + 12, w - tip.offsetWidth - 4)}px`;
  tip.style.top = `${Math.max(4, y - tip.offsetHeight - 8)}px`;
  const thumb = $("thumb");
  const c = thumb.getContext("2d");
  c.imageSmoothingEnabled = false;
  if (!spec.atlas) {
    thumb.hidden = true;
    return;
  }
  thumb.hidden = false;
  const { tile, cols, per_page } = spec.atlas;
  const p = Math.floor(i / per_page);
  const r = i % per_page;
  atlasPage(p)
    .then((img) => {
      if (map.hovered !== i) return;
      c.clearRect(0, 0, thumb.width, thumb.height);
      const [th, tw] = tile;
      c.drawImage(img, (r % cols) * tw, Math.floor(r / cols) * th, tw, th, 0, 0, thumb.width, thumb.height);
      map.thumbShown = i;
    })
    .catch(() => {});
}

function hover(i) {
  if (i === map.hovered) return;
  map.hovered = i;
  if (i < 0) $("tip").hidden = true;
  else showTip(i);
  schedule();
}

let drag = null;
let hoverQueued = null;
canvas.addEventListener("pointerdown", (ev) => {
  canvas.setPointerCapture(ev.pointerId);
  drag = { x: ev.offsetX, y: ev.offsetY, cx: view.cx, cy: view.cy, moved: false };
});
canvas.addEventListener("pointermove", (ev) => {
  if (!arrays) return;
  if (drag) {
    const dx = ev.offsetX - drag.x;
    const dy = ev.offsetY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    if (drag.moved) {
      view.cx = drag.cx - dx / view.k;
      view.cy = drag.cy + dy / view.k;
      hover(-1);
      schedule();
      return;
    }
  }
  const at = [ev.offsetX, ev.offsetY];
  if (hoverQueued) {
    hoverQueued = at;
    return;
  }
  hoverQueued = at;
  requestAnimationFrame(() => {
    const [x, y] = hoverQueued;
    hoverQueued = null;
    hover(pick(x, y));
  });
});
canvas.addEventListener("pointerleave", () => hover(-1));
canvas.addEventListener("pointerup", (ev) => {
  const wasDrag = drag?.moved;
  drag = null;
  if (wasDrag || !arrays) return;
  const i = pick(ev.offsetX, ev.offsetY);
  if (i < 0) return;
  map.selected = i;
  schedule();
  const value = { state: spec.state, point: i, frame: Math.round(map.pos) };
  map.sent.push(value);
  if (!window.LATENT_MAP) post("streamlit:setComponentValue", { value, dataType: "json" });
});
canvas.addEventListener(
  "wheel",
  (ev) => {
    if (!arrays) return;
    ev.preventDefault();
    const w = canvas.clientWidth;
    const h = spec.height ?? 520;
    const f = Math.exp(-ev.deltaY * 0.0015);
    const dx = (ev.offsetX - w / 2) / view.k;
    const dy = (h / 2 - ev.offsetY) / view.k;
    view.cx += dx - dx / f;
    view.cy += dy - dy / f;
    view.k *= f;
    schedule();
  },
  { passive: false },
);
canvas.addEventListener("dblclick", () => {
  fit();
  schedule();
});

// -- render args --------------------------------------------------------------------------------
async function load(args) {
  const res = await fetch(args.data ?? `data:application/octet-stream;base64,${args.dataBase64}`);
  if (!res.ok) throw new Error(`points: HTTP ${res.status}`);
  const buf = await res.arrayBuffer();
  const view = (name, Type) => new Type(buf, args.layout[name][0], args.layout[name][1]);
  const out = {
    xy: view("xy", Float32Array),
    index: view("index", Uint32Array),
    group: view("group", Uint16Array),
    task: view("task", Uint16Array),
    label: view("label", Uint16Array),
  };
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (let i = 0; i < out.xy.length; i += 2) {
    const x = out.xy[i];
    const y = out.xy[i + 1];
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return [out, [x0, y0, x1, y1]];
}

let loading = null; // {key, promise}: the points being fetched (one fetch per file)
async function onRender(args, theme) {
  mark("args");
  applyTheme(theme);
  const key = args.data ?? args.dataBase64;
  let newData = false;
  if (!spec || key !== (spec.data ?? spec.dataBase64)) {
    // Streamlit may render again (a height change, the theme) before the points are in:
    // those renders wait on the same fetch
    if (loading?.key !== key) loading = { key, promise: load(args) };
    const mine = loading;
    try {
      const [a, box] = await mine.promise;
      if (mine !== loading) return; // a newer map arrived meanwhile
      newData = arrays !== a; // false: an earlier render of this map installed them
      arrays = a;
      bbox = box;
      mark("data");
    } catch (err) {
      map.failed = String(err);
      $("note").textContent = `The map could not be loaded: ${err}`;
      return;
    }
    if (args.atlas?.urls?.join() !== spec?.atlas?.urls?.join()) pages.clear();
  }
  const frameChanged = !spec || args.frame !== spec.frame || args.state !== spec.state;
  const groupsChanged = newData || JSON.stringify(args.groups) !== JSON.stringify(spec.groups);
  const sameFrames = spec && spec.s === args.s;
  spec = args;
  map.state = args.state;
  map.n = args.n;
  map.s = args.s;
  if (groupsChanged) {
    hidden = new Set();
    buildLegend();
  }
  if (newData) {
    upload();
    sizeCanvas();
    fit();
    fresh = true;
  }
  if (newData || groupsChanged) buildColours();
  map.selected = args.selected ?? -1;
  $("frame").max = String(Math.max(0, args.s - 1));
  $("play").disabled = args.s < 2;
  $("note").textContent = args.note ?? "";
  if (frameChanged || !sameFrames) {
    stop();
    setPos(args.frame ?? 0);
  } else setPos(map.pos);
  draw();
  resize();
}

// -- Streamlit's component protocol -------------------------------------------------------------
function applyTheme(theme) {
  if (!theme) return;
  const root = document.documentElement.style;
  if (theme.textColor) root.setProperty("--text", theme.textColor);
  if (theme.backgroundColor) root.setProperty("--bg", theme.backgroundColor);
  if (theme.secondaryBackgroundColor) root.setProperty("--bg2", theme.secondaryBackgroundColor);
  if (theme.primaryColor) root.setProperty("--accent", theme.primaryColor);
  if (theme.font) root.setProperty("font-family", theme.font);
}

let lastHeight = 0;
function resize() {
  const h = Math.ceil(document.body.scrollHeight) + 4;
  if (h !== lastHeight && !window.LATENT_MAP) {
    lastHeight = h;
    post("streamlit:setFrameHeight", { height: h });
  }
}

new ResizeObserver(() => {
  resize();
  if (arrays) schedule();
}).observe(document.body);

if (window.LATENT_MAP) onRender(window.LATENT_MAP);
else {
  window.addEventListener("message", (ev) => {
    if (ev.data?.type === "streamlit:render") onRender(ev.data.args ?? {}, ev.data.theme);
  });
  post("streamlit:componentReady", { apiVersion: 1 });
}
