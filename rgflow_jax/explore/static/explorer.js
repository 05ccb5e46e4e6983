// The RG-Flow explorer page: the image and its latents level by level; receptive
// fields on hover, live edits by drag, level mixing, inpainting. All state is here
// (window.explorer.state); the server computes (see rgflow_jax/explore/server.py).
// Paths are relative, so the page works behind a notebook's port proxy.
'use strict';

const $ = id => document.getElementById(id);
const S = {
  info: null, view: null, history: [], channel: 0,
  selected: null,   // {i, j, c, level}
  rf: null,         // {i, j, c, field: Float32Array, max}
  cone: null,       // Uint8Array (L * L)
  mask: null,       // Uint8Array (L * L): the inpainting mask
  rfCache: new Map(), timings: [], inFlight: false, pending: null, waiters: [],
};

// ------------------------------------------------------------------ server calls
async function api(path, body, raw) {
  const options = body === undefined ? {} : {
    method: 'POST',
    headers: {'Content-Type': raw ? 'image/png' : 'application/json'},
    body: raw ? body : JSON.stringify(body),
  };
  const response = await fetch(path, options);
  let data;
  try { data = await response.json(); } catch (e) { data = {error: `HTTP ${response.status}`}; }
  if (!response.ok || data.error) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function say(text) { $('message').textContent = text; $('message').hidden = false; }
function clearMessage() { $('message').hidden = true; $('message').textContent = ''; }
async function guarded(fn) {
  try { return await fn(); } catch (e) { say(e.message); console.warn(e.message); return null; }
}

// ------------------------------------------------------------------ drawing
const L = () => S.info.image_size;
const C = () => S.info.channels;
const scale = () => Math.max(4, Math.floor(320 / L()));

function diverging(v) {  // -3 (blue) .. 0 (white) .. +3 (red)
  const t = Math.max(-1, Math.min(1, v / 3));
  const a = Math.abs(t);
  const far = t < 0 ? [33, 102, 172] : [178, 24, 43];
  return far.map(c => Math.round(255 + (c - 255) * a));
}

function drawImage() {
  const n = L(), data = $('image-data');
  data.width = data.height = n;
  const ctx = data.getContext('2d');
  const pixels = ctx.createImageData(n, n);
  for (let p = 0; p < n * n; p++) {
    for (let k = 0; k < 3; k++) pixels.data[4 * p + k] = S.view.image[p * C() + (C() === 1 ? 0 : k)];
    pixels.data[4 * p + 3] = 255;
  }
  ctx.putImageData(pixels, 0, 0);
  const shown = $('image'), s = scale();
  shown.width = shown.height = n * s;
  const g = shown.getContext('2d');
  g.imageSmoothingEnabled = false;
  g.drawImage(data, 0, 0, n * s, n * s);
  drawOverlay();
}

// The receptive field's map, a = field / its maximum: kept as the opacity of a hidden
// canvas (overlay-data), shown as a spotlight: the image veiled where a is 0, tinted
// red where a is 1.
function drawOverlay() {
  const n = L(), s = scale();
  const data = $('overlay-data'), veil = document.createElement('canvas');
  data.width = data.height = veil.width = veil.height = n;
  const field = data.getContext('2d').createImageData(n, n);
  const shade = veil.getContext('2d').createImageData(n, n);
  for (let p = 0; p < n * n && S.rf; p++) {
    const a = S.rf.field[p] / S.rf.max;
    field.data.set([255, 40, 0, Math.round(255 * a)], 4 * p);
    shade.data.set([Math.round(255 * a), Math.round(40 * a), 0, Math.round(255 * (0.55 - 0.25 * a))], 4 * p);
  }
  data.getContext('2d').putImageData(field, 0, 0);
  veil.getContext('2d').putImageData(shade, 0, 0);
  const shown = $('overlay');
  shown.width = shown.height = n * s;
  const g = shown.getContext('2d');
  g.imageSmoothingEnabled = false;
  g.drawImage(veil, 0, 0, n * s, n * s);
  if (S.cone) {  // the generation cone's pixels, outlined
    g.strokeStyle = 'rgba(0, 160, 255, 0.9)'; g.lineWidth = 1;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      if (!S.cone[i * n + j]) continue;
      if (i === 0 || !S.cone[(i - 1) * n + j]) line(g, j * s, i * s, (j + 1) * s, i * s);
      if (i === n - 1 || !S.cone[(i + 1) * n + j]) line(g, j * s, (i + 1) * s, (j + 1) * s, (i + 1) * s);
      if (j === 0 || !S.cone[i * n + j - 1]) line(g, j * s, i * s, j * s, (i + 1) * s);
      if (j === n - 1 || !S.cone[i * n + j + 1]) line(g, (j + 1) * s, i * s, (j + 1) * s, (i + 1) * s);
    }
  }
  if (S.mask) {
    g.fillStyle = 'rgba(255, 255, 255, 0.7)';
    for (let p = 0; p < n * n; p++) if (S.mask[p]) g.fillRect((p % n) * s, Math.floor(p / n) * s, s, s);
  }
}

function line(g, x0, y0, x1, y1) { g.beginPath(); g.moveTo(x0, y0); g.lineTo(x1, y1); g.stroke(); }

function levelGeometry(h) {  // the level's grid: sites (a * 2^h, b * 2^h)
  const step = 1 << h, n = L() / step;
  return {step, n, cell: Math.max(4, Math.floor(128 / n))};
}

function drawLevels() {
  const lev = S.info.level_of_site, c = S.channel;
  for (let h = 0; h < S.info.num_levels; h++) {
    const {step, n, cell} = levelGeometry(h);
    const canvas = $(`level-${h}`);
    canvas.width = canvas.height = n * cell;
    const g = canvas.getContext('2d');
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) {
      const i = a * step, j = b * step;
      if (lev[i][j] !== h) { g.fillStyle = '#e8e8e8'; g.fillRect(b * cell, a * cell, cell, cell); continue; }
      const v = S.view.latents[(i * L() + j) * C() + c];
      const [r, gg, bb] = diverging(v);
      g.fillStyle = `rgb(${r},${gg},${bb})`;
      g.fillRect(b * cell, a * cell, cell, cell);
    }
    const sel = S.selected;
    if (sel && lev[sel.i][sel.j] === h) {
      g.strokeStyle = '#000'; g.lineWidth = 2;
      g.strokeRect((sel.j / step) * cell + 1, (sel.i / step) * cell + 1, cell - 2, cell - 2);
    }
  }
}

function buildLevels() {
  const box = $('levels');
  box.innerHTML = '';
  for (let h = 0; h < S.info.num_levels; h++) {
    const {n} = levelGeometry(h);
    const fig = document.createElement('figure');
    fig.className = 'level';
    fig.innerHTML = `<canvas id="level-${h}" data-level="${h}"></canvas>` +
      `<figcaption>level ${h} (${n} x ${n} grid)</figcaption>`;
    box.appendChild(fig);
    wireLevel(fig.querySelector('canvas'), h);
  }
  const bar = $('scale-bar').getContext('2d');
  for (let x = 0; x < 120; x++) {
    const [r, g, b] = diverging(-3 + 6 * x / 119);
    bar.fillStyle = `rgb(${r},${g},${b})`; bar.fillRect(x, 0, 1, 10);
  }
  $('channel').innerHTML = Array.from({length: C()}, (_, k) => `<option value="${k}">${k}</option>`).join('');
  $('mix-levels').innerHTML = Array.from({length: S.info.num_levels}, (_, h) =>
    `<label><input type="checkbox" data-level="${h}" ${h >= S.info.num_levels / 2 ? 'checked' : ''}> ${h}</label>`).join('');
}

// ------------------------------------------------------------------ views
function showView(data) {
  S.view = {key: data.key, source: data.source, image: Uint8Array.from(data.image),
            latents: Float32Array.from(data.latents)};
  if (!S.history.some(v => v.key === data.key)) {
    S.history.push({key: data.key, source: data.source});
    const opt = document.createElement('option');
    opt.value = data.key; opt.textContent = `${data.key}: ${data.source}`;
    $('mix-b').appendChild(opt);
  }
  const previous = S.history.filter(v => v.key !== data.key).pop();
  if (previous) $('mix-b').value = previous.key;
  S.selected = null; S.cone = null; S.mask = null;
  $('value').disabled = true; $('value-text').textContent = '';
  $('image-source').textContent = `${data.key}: ${data.source}`;
  $('download-png').href = `api/download/${data.key}.png`;
  $('download-npz').href = `api/download/${data.key}.npz`;
  drawImage(); drawLevels();
  return S.view;
}

const openTest = index => guarded(async () => { clearMessage(); return showView(await api('api/open', {source: 'test', index})); });
const openSample = (temperature, seed) => guarded(async () => {
  clearMessage(); return showView(await api('api/open', {source: 'sample', temperature, seed}));
});
const upload = bytes => guarded(async () => { clearMessage(); return showView(await api('api/upload', bytes, true)); });

// ------------------------------------------------------------------ latents
function latentAt(canvas, h, event) {
  const {step, n, cell} = levelGeometry(h);
  const r = canvas.getBoundingClientRect();
  const a = Math.floor((event.clientY - r.top) / cell), b = Math.floor((event.clientX - r.left) / cell);
  if (a < 0 || b < 0 || a >= n || b >= n) return null;
  const i = a * step, j = b * step;
  return S.info.level_of_site[i][j] === h ? {i, j, c: S.channel, level: h} : null;
}

async function showField(lat) {
  const key = `${lat.i},${lat.j},${lat.c}`;
  if (!S.rfCache.has(key)) {
    const d = await api('api/rf', {i: lat.i, j: lat.j, c: lat.c});
    S.rfCache.set(key, {...lat, field: Float32Array.from(d.field), max: d.max});
  }
  S.rf = S.rfCache.get(key);
  drawOverlay();
  $('readout').textContent = `latent (${lat.i}, ${lat.j}, ${lat.c}) of level ${lat.level}: ` +
    `value ${latentValue(lat).toFixed(3)}; its receptive field is shown in red`;
  return S.rf;
}

function latentValue(lat) { return S.view.latents[(lat.i * L() + lat.j) * C() + lat.c]; }

const select = lat => guarded(async () => {
  const d = await api('api/select', {view: S.view.key, i: lat.i, j: lat.j});
  S.selected = lat; S.cone = Uint8Array.from(d.cone);
  $('value').disabled = false; $('value').value = latentValue(lat);
  $('value-text').textContent = latentValue(lat).toFixed(2);
  await showField(lat);
  drawLevels();
  return lat;
});

// One edit in flight at a time; while it runs, the newest value waits (a drag's
// events coalesce instead of queueing). The promise resolves once the pixels of this
// value, or of a newer one, are drawn.
function edit(value) {
  if (!S.selected) return Promise.resolve(null);
  S.pending = {value, t0: performance.now()};
  const drawn = new Promise(resolve => S.waiters.push(resolve));
  if (!S.inFlight) sendEdits();
  return drawn;
}

async function sendEdits() {
  S.inFlight = true;
  try {
    while (S.pending) {
      const {value, t0} = S.pending; S.pending = null;
      const lat = S.selected;
      const d = await api('api/edit', {view: S.view.key, i: lat.i, j: lat.j, c: lat.c, value});
      S.view.image = Uint8Array.from(d.image);
      S.view.latents[(lat.i * L() + lat.j) * C() + lat.c] = value;
      drawImage(); drawLevels();
      const ms = performance.now() - t0;
      S.timings.push({server: d.server_ms, total: ms});
      $('value-text').textContent = value.toFixed(2);
      $('timing').textContent = `edit: ${d.server_ms.toFixed(1)} ms on the server, ` +
        `${ms.toFixed(1)} ms from the event to the pixels`;
    }
  } catch (e) { say(e.message); } finally {
    S.inFlight = false;
    const waiters = S.waiters; S.waiters = [];
    waiters.forEach(resolve => resolve(S.view));
  }
}

function wireLevel(canvas, h) {
  let drag = null;
  canvas.addEventListener('mousemove', event => {
    if (drag) {
      const value = drag.value + (drag.y - event.clientY) * 0.02;
      $('value').value = value;
      edit(value);
      return;
    }
    const lat = latentAt(canvas, h, event);
    if (lat) guarded(() => showField(lat));
  });
  canvas.addEventListener('mousedown', async event => {
    const lat = latentAt(canvas, h, event);
    if (!lat) return;
    event.preventDefault();
    drag = {y: event.clientY, value: latentValue(lat)};
    await select(lat);
  });
  window.addEventListener('mouseup', () => { drag = null; });
}

// ------------------------------------------------------------------ mixing
const mix = (b, levelsFromA) => guarded(async () => {
  clearMessage();
  return showView(await api('api/mix', {a: S.view.key, b, levels_from_a: levelsFromA}));
});

// ------------------------------------------------------------------ inpainting
function paintAt(event) {
  const n = L(), s = scale(), r = $('overlay').getBoundingClientRect();
  const ci = Math.floor((event.clientY - r.top) / s), cj = Math.floor((event.clientX - r.left) / s);
  const radius = Math.max(1, Math.round(n / 32));
  S.mask = S.mask || new Uint8Array(n * n);
  for (let i = ci - radius; i <= ci + radius; i++) for (let j = cj - radius; j <= cj + radius; j++) {
    if (i >= 0 && j >= 0 && i < n && j < n) S.mask[i * n + j] = 1;
  }
  drawOverlay();
}

const inpaint = (seed = 0) => guarded(async () => {
  if (!S.mask || !S.mask.some(v => v)) throw new Error('paint a mask on the image first');
  clearMessage();
  const {job, total} = await api('api/inpaint', {view: S.view.key, mask: Array.from(S.mask), seed});
  const bar = $('inpaint-progress'); bar.max = total; bar.value = 0;
  for (;;) {
    await new Promise(done => setTimeout(done, 200));
    const j = await api(`api/job/${job}`);
    bar.value = j.done;
    $('inpaint-result').textContent = j.done ? `Adam step ${j.done} / ${j.total}` :
      `${j.seconds.toFixed(0)} s: compiling for this mask's box, scoring the starts…`;
    if (j.state === 'failed') throw new Error(`inpainting failed: ${j.error}`);
    if (j.state === 'done') {
      const v = showView(await api(`api/view/${j.result.view}`));
      $('inpaint-result').textContent = `PSNR over the mask ${j.result.psnr.toFixed(2)} dB ` +
        `(the noisy input: ${j.result.psnr_corrupted.toFixed(2)} dB), ` +
        `${j.result.free_latents} latents free, ${j.seconds.toFixed(1)} s`;
      return {view: v, ...j.result};
    }
  }
});

// ------------------------------------------------------------------ start
function wire() {
  $('open-test').onclick = () => openTest(+$('test-index').value);
  $('open-sample').onclick = () => openSample(+$('temperature').value, +$('seed').value);
  $('upload').onchange = async () => {
    const file = $('upload').files[0];
    if (file) await upload(await file.arrayBuffer());
    $('upload').value = '';
  };
  $('channel').onchange = () => { S.channel = +$('channel').value; drawLevels(); };
  $('value').oninput = () => edit(+$('value').value);
  $('mix-go').onclick = () => mix($('mix-b').value, Array.from(
    document.querySelectorAll('#mix-levels input:checked'), x => +x.dataset.level));
  $('paint').onchange = () => $('overlay').classList.toggle('painting', $('paint').checked);
  $('clear-mask').onclick = () => { S.mask = null; drawOverlay(); };
  $('inpaint-go').onclick = () => inpaint();
  let painting = false;
  $('overlay').addEventListener('mousedown', e => { if ($('paint').checked) { painting = true; paintAt(e); } });
  $('overlay').addEventListener('mousemove', e => { if (painting) paintAt(e); });
  window.addEventListener('mouseup', () => { painting = false; });
}

async function start() {
  S.info = await api('api/info');
  const n = S.info.image_size;
  $('model').textContent = `RG-Flow, ${n} x ${n} x ${S.info.channels}, ${S.info.num_levels} levels`;
  $('test-index').max = Math.max(0, S.info.test_images - 1);
  buildLevels(); wire();
  if (S.info.test_images) await openTest(0); else await openSample(1.0, 0);
  $('status').textContent = 'ready';
  document.body.dataset.ready = '1';
}

window.explorer = {state: S, openTest, openSample, upload, select, showField, edit, mix, inpaint, api};
guarded(start);
