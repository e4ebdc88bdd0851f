// A tsav report: the per-frame table embedded in #tsav-data drawn against the video.
// Drawing is decimated to the canvas width (one value range per pixel column), so a long video costs
// one pass over its frames per redraw; the table itself is never thinned.
"use strict";
(() => {
  const started = performance.now();
  const meta = JSON.parse(document.getElementById("tsav-meta").textContent);
  const rows = JSON.parse(document.getElementById("tsav-data").textContent);
  const parsed = performance.now();
  const EXPR = meta.expressions;
  const AUS = meta.action_units;
  const COLOURS = meta.expression_colours;
  const exprIndex = new Map(EXPR.map((e, i) => [e, i]));
  const TRAIL_S = 2; // seconds of circumplex trail
  const SNAP_S = 5e-4; // table times carry 4 decimals: a player time this close to a frame is that frame
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const offset = meta.video ? meta.video.offset_s : 0;
  const plots = $("plots");
  const cursor = $("cursor");

  const AUDIO_ONLY = "audio only";
  const FADE = 0.35; // what is left of an audio-only stretch's strength (the PNG's alpha)
  const num = (x) => (x === null || x === undefined ? NaN : x);

  // One person's frames as typed arrays (NaN / -1 where a cell is empty: --no-face nan), whether
  // each frame's face was seen, and the audio-only stretches as [first, last] frame indices.
  function columns(person) {
    const sel = rows.filter((r) => r.person === person);
    const n = sel.length;
    const c = {
      n,
      rows: sel,
      t: new Float64Array(n),
      face: new Uint8Array(n),
      v: new Float32Array(n),
      a: new Float32Array(n),
      ex: new Int8Array(n),
      au: AUS.map(() => new Float32Array(n)),
    };
    for (let i = 0; i < n; i++) {
      const r = sel[i];
      const f = r.face_found ? 1 : 0;
      c.t[i] = r.time;
      c.face[i] = f;
      c.v[i] = num(r.valence);
      c.a[i] = num(r.arousal);
      c.ex[i] = r.expression === null ? -1 : exprIndex.get(r.expression);
      for (let k = 0; k < AUS.length; k++) c.au[k][i] = num(r["p_" + AUS[k]]);
    }
    c.stretches = [];
    for (let i = 0; i < n; i++) {
      if (c.face[i]) continue;
      const first = i;
      while (i + 1 < n && !c.face[i + 1]) i++;
      c.stretches.push([first, i]);
    }
    // The axis ends where the last frame does: one mean frame interval after its start.
    const step = n > 1 ? (c.t[n - 1] - c.t[0]) / (n - 1) : 1 / 30;
    c.end = n ? c.t[n - 1] + step : 1;
    return c;
  }

  // The last frame that has started at time t (-1 before the first).
  function frameAt(c, t) {
    if (!c.n || t + SNAP_S < c.t[0]) return -1;
    let lo = 0;
    let hi = c.n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (c.t[mid] <= t + SNAP_S) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  function fit(canvas) {
    const box = canvas.getBoundingClientRect();
    const s = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(box.width * s));
    const h = Math.max(1, Math.round(box.height * s));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return ctx;
  }

  // The frames' values where `seen` holds (seen or not), NaN elsewhere: one strength of a series.
  function only(c, values, seen) {
    return values.map((v, i) => (!c.face[i] === !seen ? v : NaN));
  }

  // Each audio-only stretch as a pixel range [x0, x1) of a canvas W wide.
  function bands(c, W) {
    const scale = W / c.end;
    return c.stretches.map(([i, j]) => [Math.floor(c.t[i] * scale), Math.ceil((j + 1 < c.n ? c.t[j + 1] : c.end) * scale)]);
  }

  // The audio-only stretches faded: a wash of the page's colour over what is drawn there.
  function fade(ctx, c, W, H) {
    ctx.fillStyle = `rgba(255, 255, 255, ${1 - FADE})`;
    for (const [x0, x1] of bands(c, W)) ctx.fillRect(x0, 0, x1 - x0, H);
  }

  // One series, min/max per pixel column; neighbouring columns are joined unless a frame without a
  // value lies between them, which leaves a gap.
  function series(ctx, c, values, W, y, colour, width) {
    const scale = W / c.end;
    const join = new Path2D();
    ctx.fillStyle = colour;
    let col = -1;
    let lo = 0;
    let hi = 0;
    let first = 0;
    let last = 0;
    let prevCol = -1;
    let prevLast = 0;
    let gap = true;
    const emit = () => {
      const x = col + 0.5;
      if (!gap) {
        join.moveTo(prevCol + 0.5, y(prevLast));
        join.lineTo(x, y(first));
      }
      const top = y(hi);
      ctx.fillRect(x - width / 2, top - width / 2, width, y(lo) - top + width);
      prevCol = col;
      prevLast = last;
      gap = false;
    };
    for (let i = 0; i < c.n; i++) {
      const value = values[i];
      if (value !== value) {
        if (col >= 0) emit();
        col = -1;
        gap = true;
        continue;
      }
      const k = Math.min(W - 1, Math.floor(c.t[i] * scale));
      if (k !== col) {
        if (col >= 0) emit();
        col = k;
        lo = hi = first = last = value;
      } else {
        if (value < lo) lo = value;
        if (value > hi) hi = value;
        last = value;
      }
    }
    if (col >= 0) emit();
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.lineJoin = "round";
    ctx.stroke(join);
  }

  function drawCurves(c) {
    const canvas = $("va");
    const ctx = fit(canvas);
    const W = canvas.width;
    const H = canvas.height;
    const s = window.devicePixelRatio || 1;
    const pad = 6 * s;
    const y = (value) => pad + ((1 - value) / 2) * (H - 2 * pad);
    ctx.fillStyle = "#8a93a0";
    ctx.font = `${10 * s}px system-ui, sans-serif`;
    for (const g of [-1, -0.5, 0, 0.5, 1]) {
      ctx.fillRect(0, Math.round(y(g)), W, g === 0 ? s : Math.max(1, s / 2));
      ctx.fillText(g.toString(), 3 * s, y(g) + (g > 0 ? 10 * s : -3 * s));
    }
    const width = Math.max(1, Math.round(1.5 * s));
    // Audio-only stretches: a grey band labelled where the label fits, the curves thin and faded.
    ctx.fillStyle = "rgba(140, 150, 160, 0.22)";
    for (const [x0, x1] of bands(c, W)) {
      ctx.fillRect(x0, 0, x1 - x0, H);
      if (x1 - x0 > ctx.measureText(AUDIO_ONLY).width + 8 * s) {
        ctx.fillStyle = "#5b6573";
        ctx.fillText(AUDIO_ONLY, x0 + 4 * s, H - 6 * s);
        ctx.fillStyle = "rgba(140, 150, 160, 0.22)";
      }
    }
    ctx.globalAlpha = FADE;
    series(ctx, c, only(c, c.v, false), W, y, meta.valence_colour, Math.max(1, width / 1.5));
    series(ctx, c, only(c, c.a, false), W, y, meta.arousal_colour, Math.max(1, width / 1.5));
    ctx.globalAlpha = 1;
    series(ctx, c, only(c, c.v, true), W, y, meta.valence_colour, width);
    series(ctx, c, only(c, c.a, true), W, y, meta.arousal_colour, width);
  }

  // Each pixel column shows the frames that start inside it, or else the frame still on screen.
  function forColumns(c, W, visit) {
    const dt = c.end / W;
    let i = 0;
    for (let k = 0; k < W; k++) {
      const end = (k + 1) * dt;
      let j = i;
      while (j < c.n && c.t[j] < end) j++;
      if (j > i) visit(k, i, j);
      else if (i > 0) visit(k, i - 1, i);
      i = j;
    }
  }

  // The share of each predicted expression among the column's frames (those with one).
  function drawRibbon(c) {
    const canvas = $("ribbon");
    const ctx = fit(canvas);
    const H = canvas.height;
    const counts = new Int32Array(EXPR.length);
    forColumns(c, canvas.width, (k, i0, i1) => {
      counts.fill(0);
      let total = 0;
      for (let i = i0; i < i1; i++) {
        if (c.ex[i] >= 0) {
          counts[c.ex[i]]++;
          total++;
        }
      }
      let top = 0;
      for (let e = 0; e < EXPR.length && total; e++) {
        if (!counts[e]) continue;
        const h = (counts[e] / total) * H;
        ctx.fillStyle = COLOURS[e];
        ctx.fillRect(k, top, 1, h + 0.5);
        top += h;
      }
    });
    fade(ctx, c, canvas.width, H);
  }

  const RAMP = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
  ];
  function ramp(p) {
    const x = Math.min(1, Math.max(0, p)) * (RAMP.length - 1);
    const k = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - k;
    return RAMP[k].map((v, j) => Math.round(v + (RAMP[k + 1][j] - v) * f));
  }

  // AU probabilities, one row per AU; a column shows its highest value so that short activations
  // stay visible when many frames share a pixel.
  function drawHeat(c) {
    const canvas = $("heat");
    const ctx = fit(canvas);
    const W = canvas.width;
    const H = canvas.height;
    const image = ctx.createImageData(W, H);
    const px = image.data;
    const edges = AUS.map((_, u) => Math.round((u * H) / AUS.length)).concat([H]);
    forColumns(c, W, (k, i0, i1) => {
      for (let u = 0; u < AUS.length; u++) {
        const p = c.au[u];
        let m = -1;
        for (let i = i0; i < i1; i++) if (p[i] > m) m = p[i];
        if (m < 0) continue; // no value in the column (--no-face nan): left blank
        const [r, g, b] = ramp(m);
        for (let yy = edges[u]; yy < edges[u + 1] - (edges[u + 1] - edges[u] > 4 ? 1 : 0); yy++) {
          const o = (yy * W + k) * 4;
          px[o] = r;
          px[o + 1] = g;
          px[o + 2] = b;
          px[o + 3] = 255;
        }
      }
    });
    ctx.putImageData(image, 0, 0);
    fade(ctx, c, W, H);
  }

  function clockLabel(t, step) {
    if (step < 1) return t.toFixed(1) + " s";
    if (step < 60 && t < 60) return Math.round(t) + " s";
    const m = Math.floor(t / 60);
    const sec = Math.round(t - m * 60);
    return `${m}:${String(sec).padStart(2, "0")}`;
  }

  function drawAxis(c) {
    const canvas = $("axis");
    const ctx = fit(canvas);
    const W = canvas.width;
    const s = window.devicePixelRatio || 1;
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    const step = steps.find((x) => c.end / x <= W / (64 * s)) || 7200;
    ctx.fillStyle = "#5b6573";
    ctx.font = `${11 * s}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    for (let k = 0; k * step <= c.end; k++) {
      const x = Math.round(((k * step) / c.end) * W);
      ctx.fillRect(x, 0, s, 5 * s);
      ctx.fillText(clockLabel(k * step, step), x + 3 * s, 6 * s);
    }
  }

  function drawCircumplex(c, i) {
    const canvas = $("circumplex");
    const ctx = fit(canvas);
    const s = window.devicePixelRatio || 1;
    const W = canvas.width;
    const H = canvas.height;
    const R = Math.min(W, H) / 2 - 20 * s;
    const cx = W / 2;
    const cy = H / 2;
    const px = (v) => cx + v * R;
    const py = (a) => cy - a * R;
    ctx.strokeStyle = "#c4cad3";
    ctx.lineWidth = s;
    ctx.beginPath();
    ctx.arc(cx, cy, R, 0, 2 * Math.PI);
    ctx.moveTo(cx - R, cy);
    ctx.lineTo(cx + R, cy);
    ctx.moveTo(cx, cy - R);
    ctx.lineTo(cx, cy + R);
    ctx.stroke();
    ctx.fillStyle = "#5b6573";
    ctx.font = `${11 * s}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.fillText("arousal +", cx, 13 * s);
    ctx.fillText("arousal −", cx, H - 5 * s);
    ctx.save();
    ctx.translate(11 * s, cy);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText("valence −", 0, 0);
    ctx.restore();
    ctx.save();
    ctx.translate(W - 6 * s, cy);
    ctx.rotate(Math.PI / 2);
    ctx.fillText("valence +", 0, 0);
    ctx.restore();
    if (i < 0) return;
    // The trail: the last TRAIL_S seconds, fading out, broken where the face is missing.
    let j = i;
    while (j > 0 && c.t[j - 1] >= c.t[i] - TRAIL_S) j--;
    ctx.lineWidth = 2 * s;
    ctx.lineCap = "round";
    for (let k = j + 1; k <= i; k++) {
      if (!c.face[k] || !c.face[k - 1]) continue;
      ctx.globalAlpha = 0.15 + 0.7 * (1 - (c.t[i] - c.t[k]) / TRAIL_S);
      ctx.strokeStyle = "#3d4a5c";
      ctx.beginPath();
      ctx.moveTo(px(c.v[k - 1]), py(c.a[k - 1]));
      ctx.lineTo(px(c.v[k]), py(c.a[k]));
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    if (c.v[i] === c.v[i]) {
      ctx.globalAlpha = c.face[i] ? 1 : FADE;
      ctx.fillStyle = c.ex[i] >= 0 ? COLOURS[c.ex[i]] : "#8a93a0";
      ctx.strokeStyle = "#fff";
      ctx.beginPath();
      ctx.arc(px(c.v[i]), py(c.a[i]), 6 * s, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    if (!c.face[i]) {
      ctx.fillStyle = "#5b6573";
      ctx.fillText(AUDIO_ONLY, cx, cy - 8 * s);
    }
  }

  const people = meta.people.length ? meta.people : [...new Set(rows.map((r) => r.person))];
  const cache = new Map();
  let cur = null;
  let virtual = 0; // the time shown when there is no video to follow
  let lastFrame = null;

  function choose(person) {
    if (!cache.has(person)) cache.set(person, columns(person));
    cur = cache.get(person);
    let faces = 0;
    for (let i = 0; i < cur.n; i++) faces += cur.face[i];
    $("person-info").textContent = `${cur.n} frames, a face in ${faces}, audio only in ${cur.n - faces}`;
    window.tsavReport.audioOnly = cur.stretches.map(([i, j]) => [cur.rows[i].frame, cur.rows[j].frame]);
    drawAll();
  }

  function now() {
    return video && video.readyState > 0 ? video.currentTime - offset : virtual;
  }

  function seekTo(t) {
    virtual = Math.min(cur.end, Math.max(0, t));
    if (video) video.currentTime = virtual + offset;
    show(virtual);
  }

  function number(x) {
    return (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(3);
  }

  function show(t = now()) {
    const i = frameAt(cur, t);
    cursor.style.transform = `translateX(${(Math.max(0, t) / cur.end) * plots.clientWidth}px)`;
    $("now-time").textContent = `${Math.max(0, t).toFixed(3)} s`;
    if (i === lastFrame) return;
    lastFrame = i;
    const r = i >= 0 ? cur.rows[i] : null;
    const face = r && r.face_found;
    const has = r && r.valence !== null; // an audio-only row keeps its values unless --no-face nan
    $("now-frame").textContent = r ? String(r.frame) : "–";
    $("now-face").textContent = r ? (face ? `yes (track ${r.track_id})` : `no: ${AUDIO_ONLY}`) : "–";
    $("readout").classList.toggle("audio-only", Boolean(r && !face));
    $("now-valence").textContent = has ? number(r.valence) : "–";
    $("now-arousal").textContent = has ? number(r.arousal) : "–";
    $("now-expression").textContent = has ? `${r.expression} (${(r["p_" + r.expression] * 100).toFixed(0)}%)` : "–";
    $("now-aus").textContent = has ? AUS.filter((au) => r[au]).join(" ") || "none" : "–";
    drawCircumplex(cur, i);
  }

  function drawAll() {
    const t0 = performance.now();
    drawCurves(cur);
    drawRibbon(cur);
    drawHeat(cur);
    drawAxis(cur);
    lastFrame = null;
    show();
    window.tsavReport.drawMs = performance.now() - t0;
    window.tsavReport.draws += 1;
  }

  function tick() {
    show();
    if (video && !video.paused && !video.ended) requestAnimationFrame(tick);
  }

  let dragging = false;
  const seekAt = (e) => {
    const box = plots.getBoundingClientRect();
    seekTo(((e.clientX - box.left) / box.width) * cur.end);
  };
  plots.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    dragging = true;
    plots.setPointerCapture(e.pointerId);
    seekAt(e);
    e.preventDefault();
  });
  plots.addEventListener("pointermove", (e) => dragging && seekAt(e));
  const release = () => (dragging = false);
  plots.addEventListener("pointerup", release);
  plots.addEventListener("pointercancel", release);
  document.addEventListener("keydown", (e) => {
    if (e.target !== document.body) return; // the player and the selector handle their own keys
    const i = frameAt(cur, now());
    if (e.key === "ArrowRight" && i + 1 < cur.n) seekTo(cur.t[i + 1]);
    else if (e.key === "ArrowLeft" && i > 0) seekTo(cur.t[i - 1]);
    else if (e.key === " " && video) video.paused ? video.play() : video.pause();
    else return;
    e.preventDefault();
  });
  if (video) {
    video.addEventListener("play", () => requestAnimationFrame(tick));
    for (const name of ["seeking", "seeked", "timeupdate", "loadedmetadata"]) video.addEventListener(name, () => show());
  }

  const select = $("person");
  for (const p of people) select.add(new Option(p, p));
  $("person-pick").hidden = people.length < 2;
  select.addEventListener("change", () => choose(select.value));

  window.tsavReport = { parseMs: parsed - started, drawMs: 0, draws: 0 };
  choose(people[0]);
  new ResizeObserver(() => drawAll()).observe(plots);
})();
