// The Latent traversal panel (issue 19): sliders, selectors for categorical blocks, a 2-D pad
// and the decoded image, decoded in this page by onnxruntime-web on every animation frame
// while a control moves. The server is told the values when a drag (or a key press) ends.
//
// A Streamlit custom component without a build step: it speaks the component protocol
// (streamlit-component-lib's messages) by postMessage itself. Render args, from
// traversal_panel.py: state (changes with the input, expert or snapshot), blocks
// [{name, dim, kind}], values {name: [..]} (the server's current ones), model (the ONNX
// file's URL relative to this folder), shape [H, W] or [H, W, 3], image (the server's decode
// of `values`, a PNG data: URL shown until the first in-page frame), pad [[name, i], x2].

const STEP = 0.05; // a key press, as the server's sliders
const PAD_EDGE = 8; // pad pixels between its border and the -3 / 3 positions
const SEND_AFTER_MS = 150; // quiet time after a release before the server hears of it
const $ = (id) => document.getElementById(id);

function post(type, data = {}) {
  window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
}

// Everything a test or the benchmark reads (tests/e2e/test_browser_traversal.py).
const panel = {
  state: null,
  values: null,
  ready: false,
  failed: null,
  pixels: null, // the last decoded image, uint8 [H * W (* 3)]
  server: null, // {values, image}: the values the server holds and its decode (PNG data: URL)
  frames: [], // {t: epoch ms when painted, decode: ms in session.run, input, state}
  sent: [], // {t, values}
  runtime: "onnxruntime-web",
  timing: {}, // ms since this frame's navigation: the server's image shown, runtime fetched,
  // runtime started, graph fetched, session made (the first in-page frame: frames[0])
};
const mark = (what) => (panel.timing[what] ??= performance.now());
window.traversalPanel = panel;

// -- runtime ------------------------------------------------------------------------------
// The first frame waits on the runtime: its .wasm (preloaded by index.html, so the download
// starts with the page), inflated, then instantiated. The runtime's JavaScript is imported
// dynamically, after the component has told Streamlit it is ready (at the end of this
// module), so the render args and the decoder's graph arrive while it loads.
let ort = null;
const ortReady = import("./vendor/onnxruntime-web/ort.wasm.bundle.min.mjs").then((mod) => {
  mod.env.wasm.numThreads = 1; // no cross-origin isolation: no SharedArrayBuffer, one thread
  mod.env.wasm.proxy = false; // in this thread: a worker's hop per frame cost 10+ fps here
  panel.runtime = `onnxruntime-web ${mod.env.versions?.web ?? ""}`.trim();
  ort = mod;
  return mod;
});
// Both files are gzipped on disk (served as application/gzip, which the server does not
// compress again) and inflated here.
async function inflate(url, what) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status}`);
  return new Response(res.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
}

// A 70-byte ONNX graph (y = Identity(x), opset 17): a session of it starts the runtime
// (instantiating the .wasm, onnxruntime's own start-up: most of the first frame's wait) as
// soon as the .wasm is here, while the render args and the decoder's graph still travel.
// prettier-ignore
const WARM_UP = new Uint8Array([8, 8, 18, 0, 58, 58, 10, 16, 10, 1, 120, 18, 1, 121, 34, 8, 73,
  100, 101, 110, 116, 105, 116, 121, 18, 4, 119, 97, 114, 109, 90, 15, 10, 1, 120, 18, 10, 10,
  8, 8, 1, 18, 4, 10, 2, 8, 1, 98, 15, 10, 1, 121, 18, 10, 10, 8, 8, 1, 18, 4, 10, 2, 8, 1, 66,
  4, 10, 0, 16, 17]);

const wasmReady = (async () => {
  const url = "./vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm.gz";
  const [mod, binary] = await Promise.all([ortReady, inflate(url, "runtime")]);
  mod.env.wasm.wasmBinary = binary;
  mark("runtime");
  await mod.InferenceSession.create(WARM_UP, { executionProviders: ["wasm"] });
  mark("started");
  return mod;
})();
const sessions = new Map(); // model URL -> Promise<InferenceSession>

function session(url) {
  if (!sessions.has(url)) {
    const made = (async () => {
      const graph = inflate(url, "decoder"); // fetched while the runtime still loads
      graph.then(() => mark("graph"));
      const bytes = new Uint8Array(await graph);
      const runtime = await wasmReady;
      const made = await runtime.InferenceSession.create(bytes, {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
      });
      mark("session");
      return made;
    })();
    made.catch(() => sessions.delete(url)); // retried on the next render
    sessions.set(url, made);
  }
  return sessions.get(url);
}

// -- state --------------------------------------------------------------------------------
let spec = null;
let current = null; // the InferenceSession of spec.model once loaded
let shownInState = 0; // frames decoded in the page since the state last changed
let inputAt = null; // epoch ms of the newest input event not yet decoded

function moved(ev) {
  inputAt = performance.timeOrigin + (ev?.timeStamp ?? performance.now());
  schedule();
}
let flat = new Float32Array(0);

function layoutKey(args) {
  return JSON.stringify([args.state, args.blocks, args.model]);
}

function onRender(args, theme) {
  applyTheme(theme);
  const fresh = !spec || layoutKey(spec) !== layoutKey(args);
  const newState = !spec || spec.state !== args.state;
  spec = args;
  panel.server = { values: args.values, image: args.image }; // the server's decode of values
  panel.start = args.start; // the input's own code (Reset)
  if (fresh) {
    if (newState || !panel.values) panel.values = clone(args.values);
    if (newState) shownInState = 0;
    panel.state = args.state;
    build();
    if (!shownInState) paintUrl(args.image);
    load(args.model);
  }
  resize();
}

function clone(values) {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.slice()]));
}

async function load(url) {
  current = null;
  panel.ready = false;
  try {
    const s = await session(url);
    if (spec.model !== url) return; // another expert was chosen meanwhile
    current = s;
    panel.ready = true;
    panel.failed = null;
    $("caption").textContent = "decoded in this page";
    schedule();
  } catch (err) {
    panel.failed = String(err?.message ?? err);
    $("caption").textContent = "decoded on the server";
    $("status").textContent = `In-page decoding failed: ${panel.failed}`;
    post("streamlit:setComponentValue", {
      value: { state: spec.state, failed: panel.failed },
      dataType: "json",
    });
  }
}

// -- decoding -----------------------------------------------------------------------------
let pending = false;
let busy = false;
let again = false;

function schedule() {
  if (!pending) {
    pending = true;
    requestAnimationFrame(frame);
  }
}

async function frame() {
  pending = false;
  if (!current) return;
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  try {
    let j = 0;
    for (const b of spec.blocks) for (const v of panel.values[b.name]) flat[j++] = v;
    const input = inputAt;
    inputAt = null;
    const t0 = performance.now();
    const out = await current.run({ z: new ort.Tensor("float32", flat.slice(), [1, flat.length]) });
    const t1 = performance.now();
    paint(out.pixels.data);
    panel.frames.push({
      t: performance.timeOrigin + performance.now(),
      decode: t1 - t0,
      input, // when the newest input this frame shows happened (null: none)
      state: spec.state,
    });
    shownInState += 1;
    if (panel.frames.length > 5000) panel.frames.splice(0, 1000);
    // the decode time of the last 30 frames (not the first, which warms the runtime up)
    const recent = panel.frames.slice(1).slice(-30).map((f) => f.decode).sort((a, b) => a - b);
    const median = recent.length ? ` · ${recent[recent.length >> 1].toFixed(2)} ms per image` : "";
    $("status").textContent = `${panel.runtime} (wasm)${median}`;
  } catch (err) {
    $("status").textContent = `decode failed: ${err?.message ?? err}`;
  } finally {
    busy = false;
    if (again) {
      again = false;
      schedule();
    }
  }
}

let imageData = null;

function paint(pixels) {
  const [h, w, c = 1] = spec.shape;
  const canvas = $("image");
  if (canvas.width !== w || canvas.height !== h || !imageData) {
    canvas.width = w;
    canvas.height = h;
    imageData = new ImageData(w, h);
  }
  const rgba = imageData.data;
  for (let p = 0; p < w * h; p++) {
    const g = c === 1 ? pixels[p] : null;
    rgba[4 * p] = c === 1 ? g : pixels[3 * p];
    rgba[4 * p + 1] = c === 1 ? g : pixels[3 * p + 1];
    rgba[4 * p + 2] = c === 1 ? g : pixels[3 * p + 2];
    rgba[4 * p + 3] = 255;
  }
  canvas.getContext("2d").putImageData(imageData, 0, 0);
  panel.pixels = pixels;
}

function paintUrl(url) {
  if (!url) return;
  const img = new Image();
  img.onload = () => {
    if (shownInState) return; // an in-page frame came first
    const canvas = $("image");
    canvas.width = img.width;
    canvas.height = img.height;
    imageData = null;
    canvas.getContext("2d").drawImage(img, 0, 0);
    mark("image");
  };
  img.src = url;
}

// -- telling the server --------------------------------------------------------------------
let sendTimer = null;

function queueSend() {
  clearTimeout(sendTimer);
  sendTimer = setTimeout(() => {
    const values = clone(panel.values);
    panel.sent.push({ t: Date.now(), values });
    post("streamlit:setComponentValue", {
      value: { state: spec.state, values },
      dataType: "json",
    });
  }, SEND_AFTER_MS);
}

// -- controls -----------------------------------------------------------------------------
const sliders = new Map(); // "name[i]" -> {input, text}

function setValue(name, i, v) {
  panel.values[name][i] = v;
  const s = sliders.get(`${name}[${i}]`);
  if (s) {
    s.input.value = String(v);
    s.text.textContent = v.toFixed(2);
  }
}

function build() {
  sliders.clear();
  const sel = $("selectors");
  const box = $("sliders");
  sel.replaceChildren();
  box.replaceChildren();
  const [h, w] = spec.shape;
  flat = new Float32Array(spec.blocks.reduce((n, b) => n + b.dim, 0));
  $("image").width = w;
  $("image").height = h;
  for (const b of spec.blocks) {
    if (b.kind === "categorical") sel.append(selector(b));
    else for (let i = 0; i < b.dim; i++) box.append(slider(b.name, i));
  }
  buildPad();
}

function element(tag, className = null, text = null) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== null) el.textContent = text;
  return el;
}

function selector(block) {
  const div = element("div", "selector");
  const choices = element("div", "choices");
  div.append(element("span", "name", `${block.name} (category)`), choices);
  const labels = block.labels ?? [...Array(block.dim).keys()].map(String);
  labels.forEach((label, k) => {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.textContent = label;
    btn.dataset.block = block.name;
    btn.dataset.index = k;
    btn.setAttribute("aria-pressed", String(panel.values[block.name][k] === 1));
    btn.addEventListener("click", (ev) => {
      panel.values[block.name] = panel.values[block.name].map((_, j) => (j === k ? 1 : 0));
      for (const other of choices.children)
        other.setAttribute("aria-pressed", String(other === btn));
      moved(ev);
      queueSend();
    });
    choices.append(btn);
  });
  return div;
}

function slider(name, i) {
  const id = `${name}[${i}]`;
  const text = element("span", "value");
  const label = element("label");
  label.append(element("span", null, id), text);
  const div = element("div", "slider");
  const input = document.createElement("input");
  Object.assign(input, { type: "range", min: -3, max: 3, step: "any" });
  input.dataset.name = name;
  input.dataset.index = i;
  input.setAttribute("aria-label", id);
  div.append(label, input);
  sliders.set(id, { input, text });
  setValue(name, i, panel.values[name][i]);
  input.addEventListener("input", (ev) => {
    panel.values[name][i] = Number(input.value);
    text.textContent = panel.values[name][i].toFixed(2);
    drawPad();
    moved(ev);
  });
  input.addEventListener("change", queueSend);
  input.addEventListener("keydown", (ev) => {
    const by = { ArrowRight: STEP, ArrowUp: STEP, ArrowLeft: -STEP, ArrowDown: -STEP,
      PageUp: 10 * STEP, PageDown: -10 * STEP }[ev.key];
    const to = { Home: -3, End: 3 }[ev.key];
    if (by === undefined && to === undefined) return;
    ev.preventDefault();
    const v = to ?? Math.round((panel.values[name][i] + by) / STEP) * STEP;
    setValue(name, i, Math.min(3, Math.max(-3, v)));
    drawPad();
    moved(ev);
    queueSend();
  });
  return div;
}

// -- the 2-D pad: two chosen Gaussian variables at once ------------------------------------
function gaussianVars() {
  return spec.blocks
    .filter((b) => b.kind !== "categorical")
    .flatMap((b) => [...Array(b.dim).keys()].map((i) => `${b.name}[${i}]`));
}

function buildPad() {
  const vars = gaussianVars();
  $("pad-box").classList.toggle("hidden", vars.length < 2);
  if (vars.length < 2) return;
  const chosen = (spec.pad ?? []).map(([n, i]) => `${n}[${i}]`).filter((v) => vars.includes(v));
  const defaults = [chosen[0] ?? vars[0], chosen[1] ?? vars.find((v) => v !== chosen[0])];
  ["pad-x", "pad-y"].forEach((id, k) => {
    const s = $(id);
    s.replaceChildren(...vars.map((v) => new Option(v, v)));
    s.value = defaults[k];
    s.onchange = drawPad;
  });
  drawPad();
}

function padVar(id) {
  const m = /^(.*)\[(\d+)\]$/.exec($(id).value);
  return m ? [m[1], Number(m[2])] : null;
}

function drawPad() {
  const canvas = $("pad");
  if ($("pad-box").classList.contains("hidden")) return;
  const ctx = canvas.getContext("2d");
  const n = canvas.width;
  ctx.clearRect(0, 0, n, n);
  ctx.strokeStyle = "rgba(128,128,128,0.5)";
  ctx.beginPath();
  ctx.moveTo(n / 2, 0);
  ctx.lineTo(n / 2, n);
  ctx.moveTo(0, n / 2);
  ctx.lineTo(n, n / 2);
  ctx.stroke();
  const [x, y] = [padVar("pad-x"), padVar("pad-y")];
  if (!x || !y) return;
  const px = PAD_EDGE + ((panel.values[x[0]][x[1]] + 3) / 6) * (n - 2 * PAD_EDGE);
  const py = PAD_EDGE + (1 - (panel.values[y[0]][y[1]] + 3) / 6) * (n - 2 * PAD_EDGE);
  ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--accent");
  ctx.beginPath();
  ctx.arc(px, py, 5, 0, 2 * Math.PI);
  ctx.fill();
}

function padMove(ev) {
  const r = $("pad").getBoundingClientRect();
  const edge = (PAD_EDGE / $("pad").width) * r.width; // -3 and 3 sit this far inside
  const fx = Math.min(1, Math.max(0, (ev.clientX - r.left - edge) / (r.width - 2 * edge)));
  const fy = Math.min(1, Math.max(0, (ev.clientY - r.top - edge) / (r.height - 2 * edge)));
  const [x, y] = [padVar("pad-x"), padVar("pad-y")];
  setValue(x[0], x[1], -3 + 6 * fx);
  setValue(y[0], y[1], 3 - 6 * fy);
  drawPad();
  moved(ev);
}

$("pad").addEventListener("pointerdown", (ev) => {
  $("pad").setPointerCapture(ev.pointerId);
  padMove(ev);
});
$("pad").addEventListener("pointermove", (ev) => {
  if ($("pad").hasPointerCapture(ev.pointerId)) padMove(ev);
});
$("pad").addEventListener("pointerup", queueSend);
$("pad").addEventListener("pointercancel", queueSend);

$("reset").addEventListener("click", () => {
  panel.values = clone(spec.start ?? spec.values);
  build();
  schedule();
  queueSend();
});

// -- Streamlit's component protocol ----------------------------------------------------------
function applyTheme(theme) {
  if (!theme) return;
  const root = document.documentElement.style;
  if (theme.textColor) root.setProperty("--text", theme.textColor);
  if (theme.textColor) root.setProperty("--muted", `color-mix(in srgb, ${theme.textColor} 60%, transparent)`);
  if (theme.backgroundColor) root.setProperty("--bg", theme.backgroundColor);
  if (theme.secondaryBackgroundColor) root.setProperty("--bg2", theme.secondaryBackgroundColor);
  if (theme.primaryColor) root.setProperty("--accent", theme.primaryColor);
  if (theme.font) root.setProperty("font-family", theme.font);
}

let lastHeight = 0;

function resize() {
  const h = Math.ceil(document.body.scrollHeight) + 4;
  if (h !== lastHeight) {
    lastHeight = h;
    post("streamlit:setFrameHeight", { height: h });
  }
}

new ResizeObserver(resize).observe(document.body);
window.addEventListener("message", (ev) => {
  if (ev.data?.type === "streamlit:render") onRender(ev.data.args ?? {}, ev.data.theme);
});
post("streamlit:componentReady", { apiVersion: 1 });
