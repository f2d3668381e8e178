"use strict";
/*
 * The reading viewer. Args (from volume_viewer.py, as one JSON string that first.js unpacks): ct {url, name, level, width}, overlays [{id, url, name,
 * colormap, opacity, cal_min, cal_max, colorbar, key, label, swatch|ramp}], presets [{key, name, level, width}],
 * lps_to_ijk (4x4 row-major), dims [ni, nj, nk], nav {seq, lps}, height, clickable.
 * Mouse: wheel = slice (the plane under the pointer), ctrl+wheel = zoom, left-drag = the tool (W window/level,
 * M caliper, P pan), ctrl-drag / right-drag / middle-drag = pan, a click (no drag) moves
 * the linked crosshairs there and tells Python (the missed-finding form).
 * Keys (pointer over the viewer or viewer focused): arrows / PageUp / PageDown = slice, 1-9 = window presets,
 * W M P = tool, + - = zoom, R = reset, and each overlay's own key toggles it; other keys go to the page.
 */
const NV = window.niivue;
const $ = (id) => document.getElementById(id);
const canvas = $("gl");
const wrap = $("wrap");
const PLANES = ["axial", "coronal", "sagittal"];
const state = {
  args: null, ctUrl: null, ct: null, overlays: new Map(), wanted: new Map(), navSeq: null, tool: "window",
  plane: 0, clickSeq: 0, ready: false, firstImageMs: null, loadStart: performance.now(), outline: false,
  lastMeasureMm: null, down: null, hover: null, loading: Promise.resolve(), marks: {},
};
// the page's timeline in epoch ms (the benchmark compares it with the moment it clicked "Open")
function mark(name) { state.marks[name] = Math.round(performance.timeOrigin + performance.now()); }
const FIRST = window.triageFirst || { args: null, marks: {} };  // first.js: the first image, the early args
Object.assign(state.marks, FIRST.marks, { navigation: Math.round(performance.timeOrigin) });
mark("viewerScript");

function post(type, extra) {
  window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, extra), "*");
}
function setHeight() { post("streamlit:setFrameHeight", { height: document.body.scrollHeight }); }

const nv = new NV.Niivue({
  backColor: [0, 0, 0, 1],
  crosshairColor: [0.2, 0.75, 1.0, 0.9],
  crosshairWidth: 1,
  isRadiologicalConvention: true,
  isOrientationTextVisible: true,
  showAllOrientationMarkers: true,
  isRuler: true,
  isColorbar: true,
  show3Dcrosshair: false,
  multiplanarShowRender: NV.SHOW_RENDER.NEVER,
  multiplanarLayout: NV.MULTIPLANAR_TYPE.AUTO,
  heroImageFraction: 0.6,
  heroSliceType: NV.SLICE_TYPE.AXIAL,
  dragModePrimary: NV.DRAG_MODE.windowing,
  dragMode: NV.DRAG_MODE.windowing,  // the fallback mode (wheel); not pan, whose wheel zooms
  viewModeHotKey: "",
  clipPlaneHotKey: "",
  cycleClipPlaneHotKey: "",
  measureTextColor: [1, 1, 0.3, 1],
  measureLineColor: [1, 1, 0.3, 1],
  loadingText: "",
});
// Our one change to the vendored NiiVue (see dashboard/README.md): no gradient texture (three extra passes over the whole
// volume on every CT refresh: load, window change), which only lights the 3D render this viewer never shows.
nv.opts.triageNoGradient = true;

// --- the scrolling resolution (software WebGL only) ---------------------------------------------------
// A slice change redraws the whole canvas (1062 x 600 CSS px, four tiles), and in software WebGL (SwiftShader,
// no GPU) the time goes into rasterising those pixels: ~150-250 ms a frame at full resolution; with the canvas
// backed by 0.5 of the pixels per side at best 33-35 ms, by 0.4 at best 15-24 ms (2 shared cores; the volume's
// size hardly matters; dashboard/README.md). So while the reader scrolls, a software renderer draws at
// SCROLL_SCALE (the axial tile: 240 pixels for 600 CSS pixels), and 300 ms after the last step the still image
// is drawn again at full resolution. With a hardware renderer the canvas always has full resolution.
const SCROLL_SCALE = 0.4;
const SETTLE_MS = 300;
const scrollRes = { software: false, renderer: "", low: false, timer: null, scale: SCROLL_SCALE };
function detectSoftware(gl) {
  let name = "";
  try {
    const ext = gl.getExtension("WEBGL_debug_renderer_info");
    name = String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER) || "");
  } catch (err) { /* unknown: treat as hardware */ }
  scrollRes.renderer = name;
  scrollRes.software = /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name);
  document.body.dataset.renderer = scrollRes.software ? "software" : "hardware";
}
function setBacking(scale) {
  // NiiVue's resizeListener sizes the canvas for forceDevicePixelRatio and draws; the draw is left to the caller
  nv.opts.forceDevicePixelRatio = scale * (window.devicePixelRatio || 1);
  nv.drawScene = () => {};
  try { nv.resizeListener(); } finally { delete nv.drawScene; }
}
function scrolling() {
  if (!scrollRes.software) return;
  if (!scrollRes.low) {
    scrollRes.low = true;
    setBacking(scrollRes.scale);
  }
  clearTimeout(scrollRes.timer);
  scrollRes.timer = setTimeout(settle, SETTLE_MS);
}
function settle() {
  clearTimeout(scrollRes.timer);
  if (!scrollRes.low) return;
  scrollRes.low = false;
  setBacking(1);
  nv.drawScene();
}

const TOOL_MODES = { window: NV.DRAG_MODE.windowing, measure: NV.DRAG_MODE.measurement, pan: NV.DRAG_MODE.pan };
function setTool(tool) {
  state.tool = tool;
  nv.opts.dragModePrimary = TOOL_MODES[tool];
  nv.opts.mouseEventConfig = {
    leftButton: { primary: TOOL_MODES[tool], withCtrl: NV.DRAG_MODE.pan },  // (NiiVue's shift-drag works once only)
    rightButton: NV.DRAG_MODE.pan,
    centerButton: NV.DRAG_MODE.pan,
  };
  document.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("on", b.dataset.tool === tool));
  canvas.style.cursor = tool === "pan" ? "move" : "crosshair";
}

// --- geometry ------------------------------------------------------------------------------------------
function rasToLps(mm) { return [-mm[0], -mm[1], mm[2]]; }
function lpsToIjk(lps) {
  const m = state.args.lps_to_ijk;
  return [0, 1, 2].map((r) => m[r][0] * lps[0] + m[r][1] * lps[1] + m[r][2] * lps[2] + m[r][3]);
}
function crosshairIjk() {
  return lpsToIjk(rasToLps(nv.frac2mm(nv.scene.crosshairPos))).map(Math.round);
}
function huAt(ijk) {
  const d = state.args.dims;
  if (!state.ct || ijk.some((v, a) => v < 0 || v >= d[a])) return null;
  const raw = state.ct.img[ijk[0] + d[0] * (ijk[1] + d[1] * ijk[2])];
  return raw * (state.ct.hdr.scl_slope || 1) + (state.ct.hdr.scl_inter || 0);
}
function eventCanvasPos(e) {
  const r = canvas.getBoundingClientRect();
  const dpr = nv.uiData.dpr || window.devicePixelRatio || 1;
  return [(e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr];
}
function fracAt(e) {
  const f = nv.canvasPos2frac(eventCanvasPos(e));
  return f && f[0] >= 0 ? f : null;
}

// --- status line ---------------------------------------------------------------------------------------
function updateStatus() {
  if (!state.ct) return;
  const d = state.args.dims, ijk = crosshairIjk();
  const s = $("slices");
  s.textContent = `Axial ${ijk[2] + 1}/${d[2]} · Coronal ${ijk[1] + 1}/${d[1]} · Sagittal ${ijk[0] + 1}/${d[0]}`;
  s.dataset.k = ijk[2]; s.dataset.j = ijk[1]; s.dataset.i = ijk[0];
  const lo = state.ct.cal_min, hi = state.ct.cal_max;
  const wl = $("wl");
  wl.dataset.level = Math.round((lo + hi) / 2); wl.dataset.width = Math.round(hi - lo);
  wl.textContent = `W ${wl.dataset.width} L ${wl.dataset.level}`;
  if (!state.hover) {
    const hu = huAt(ijk);
    $("probe").textContent = hu === null ? "" : `HU ${Math.round(hu)} at crosshair`;
  }
}
let statusQueued = false;
function queueStatus() {
  if (statusQueued) return;
  statusQueued = true;
  requestAnimationFrame(() => { statusQueued = false; updateStatus(); });
}

function probe(e) {
  const f = fracAt(e);
  if (!f || !state.ct) { state.hover = null; $("probe").textContent = ""; return; }
  const ijk = lpsToIjk(rasToLps(nv.frac2mm(f))).map(Math.round);
  const hu = huAt(ijk);
  state.hover = ijk;
  const p = $("probe");
  p.textContent = hu === null ? "" : `HU ${Math.round(hu)} at (k ${ijk[2]}, j ${ijk[1]}, i ${ijk[0]})`;
  p.dataset.hu = hu === null ? "" : Math.round(hu);
}

// --- window, zoom, overlays ----------------------------------------------------------------------------
// NiiVue's updateGLVolume re-renders every layer into its 3D textures, the CT's too; in software WebGL that
// costs seconds per layer on a big study. A window change needs only the CT layer, an overlay change only the
// overlay layers (they are blended into one texture in order).
function refreshCt() {
  nv.refreshLayers(nv.volumes[0], 0);
  nv.drawScene();
}
function refreshOverlays() {
  nv.back = nv.volumes[0];
  nv.overlays = nv.volumes.slice(1);
  for (let i = 1; i < nv.volumes.length; i++) nv.refreshLayers(nv.volumes[i], i);
  nv.drawScene();
}
function setWindow(level, width) {
  if (!state.ct) return;
  state.ct.cal_min = level - width / 2;
  state.ct.cal_max = level + width / 2;
  refreshCt();
  queueStatus();
}
function zoom(factor) {
  const p = nv.scene.pan2Dxyzmm.slice();
  p[3] = Math.min(8, Math.max(0.5, p[3] * factor));
  nv.setPan2Dxyzmm(p);
}
function reset() {
  nv.setPan2Dxyzmm([0, 0, 0, 1]);
  if (state.args && state.args.ct) setWindow(state.args.ct.level, state.args.ct.width);
  nv.clearAllMeasurements && nv.clearAllMeasurements();
  $("measure").textContent = "";
  nv.drawScene();
}
function overlayVisible(id, on) {
  const o = state.overlays.get(id);
  if (!o) return;
  o.on = on;
  o.vol.colorbarVisible = on && !!o.spec.colorbar;  // the heatmap's colour scale only while it is shown
  o.vol.opacity = on ? o.spec.opacity : 0;
  refreshOverlays();
  const box = document.querySelector(`input[data-overlay="${id}"]`);
  if (box) box.checked = on;
}

function legend() {
  const parts = [];
  for (const o of state.overlays.values()) {
    const s = o.spec;
    const look = s.ramp
      ? `<span class="ramp" style="background:linear-gradient(to right,${s.ramp.join(",")})"></span>${s.ramp_labels || ""}`
      : `<span class="sw" style="background:${s.swatch}"></span>`;
    parts.push(`<span>${s.ramp ? "" : look}${s.label}${s.ramp ? look : ""}</span>`);
  }
  const keys = "wheel/↑↓ slice · drag: tool (W/L, M caliper, P pan) · right-drag pan · ctrl+wheel zoom · click: mark finding";
  $("legend").innerHTML = parts.join("") + `<span class="muted">${keys}</span>`;
  const tog = $("toggles");
  tog.innerHTML = "";
  for (const [id, o] of state.overlays) {
    const l = document.createElement("label");
    l.innerHTML = `<input type="checkbox" data-overlay="${id}" ${o.on ? "checked" : ""}> ${o.spec.label} <span class="muted">${o.spec.key.toUpperCase()}</span>`;
    l.querySelector("input").addEventListener("change", (ev) => overlayVisible(id, ev.target.checked));
    tog.appendChild(l);
  }
  if (state.overlays.size) {
    const b = document.createElement("button");
    b.textContent = state.outline ? "Fill (O)" : "Outline (O)";
    b.addEventListener("click", toggleOutline);
    tog.appendChild(b);
  }
  setHeight();
}
function toggleOutline() {
  state.outline = !state.outline;
  nv.overlayOutlineWidth = state.outline ? 1 : 0;
  nv.drawScene();
  legend();
}

async function syncOverlays(specs) {
  // Each NiiVue volume change re-renders every layer (slow in software WebGL on big studies): an overlay is
  // created with its final opacity and added once; nothing is refreshed twice.
  // New overlays are appended and only the overlay layers are rendered (not the CT again).
  const want = new Map(specs.map((s) => [s.id, s]));
  let removed = false, added = false;
  for (const [id, o] of state.overlays) {
    if (!want.has(id) || want.get(id).url !== o.spec.url) {
      nv.volumes.splice(nv.volumes.indexOf(o.vol), 1);
      state.overlays.delete(id);
      removed = true;
    }
  }
  if (removed) {
    nv.overlays = nv.volumes.slice(1);
    nv.updateGLVolume();  // (rare: the overlay texture must be rebuilt without the removed layer)
  }
  for (const s of specs) {
    if (state.overlays.has(s.id)) continue;
    if (s.colormap_def && !nv.colormaps().includes(s.colormap)) nv.addColormap(s.colormap, s.colormap_def);
    const on = s.visible !== false;
    const vol = await NV.NVImage.loadFromUrl({
      url: s.url, name: s.name, colormap: s.colormap, opacity: on ? s.opacity : 0, cal_min: s.cal_min,
      cal_max: s.cal_max, trustCalMinMax: true, colorbarVisible: on && !!s.colorbar,
    });
    vol.cal_min = s.cal_min; vol.cal_max = s.cal_max;
    state.overlays.set(s.id, { vol: vol, spec: s, on: on });
    nv.volumes.push(vol);
    added = true;
  }
  if (added) refreshOverlays();
  legend();
}

// --- loading ---------------------------------------------------------------------------------------------
async function loadStudy(args) {
  state.ready = false;
  document.body.dataset.ready = "0";
  state.loadStart = performance.now();
  const fi = args.first_image;
  if (fi && FIRST.show && FIRST.shownUrl && FIRST.shownUrl !== fi.url) FIRST.show(fi);  // (a later study in this frame)
  else if (!fi) $("msg").textContent = "Loading the study…";
  $("msg").style.display = "";
  mark("load");
  state.overlays.clear();  // (loadVolumes replaces every volume)
  const c = args.ct;
  // The opening slice (the one first.js drew) is set before the load, so the load's one draw shows it:
  // NiiVue's fraction of a voxel index is (index + 0.5) / count, along RAS axes.
  if (Number.isInteger(c.k)) {
    const m = args.lps_to_ijk, d = args.dims;
    // (the sign of the k axis along superior: from the inverse affine's row k, superior = +z in LPS and RAS)
    const kUp = m[2][2] >= 0;
    nv.scene.crosshairPos = [0.5, 0.5, kUp ? (c.k + 0.5) / d[2] : (d[2] - c.k - 0.5) / d[2]];
  }
  // one refresh and one draw: the window and the layout are set before the load. The CT is an uncompressed
  // NIfTI; "Range: bytes=0-" makes the server answer 206, which its gzip middleware leaves alone (volume_viewer.py).
  await nv.loadVolumes([{ url: c.url, name: c.name, colormap: "gray", trustCalMinMax: true,
    headers: { Range: "bytes=0-" },
    cal_min: c.level - c.width / 2, cal_max: c.level + c.width / 2, colorbarVisible: false }]);
  state.ct = nv.volumes[0];
  state.ct.colorbarVisible = false;
  // gl.finish() does not wait in Chromium; reading a pixel does, so the figure includes the GPU's work
  nv.gl.readPixels(0, 0, 1, 1, nv.gl.RGBA, nv.gl.UNSIGNED_BYTE, new Uint8Array(4));
  state.firstImageMs = performance.now() - state.loadStart;
  mark("viewer");
  if (FIRST.hide) FIRST.hide(); else $("first").style.display = "none";
  $("msg").style.display = "none";
  state.ready = true;
  document.body.dataset.ready = "1";
  document.body.dataset.firstImageMs = Math.round(state.firstImageMs);
  queueStatus();
  // let the browser show the first image before the overlays' render (seconds in software WebGL) holds the page
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(resolve, 50))));
  await syncOverlays(args.overlays || []);
  mark("overlays");
}

function navigate(nav) {
  if (!nav || nav.seq === state.navSeq || !state.ct) return;
  state.navSeq = nav.seq;
  const lps = nav.lps;
  nv.scene.crosshairPos = nv.mm2frac([-lps[0], -lps[1], lps[2]]);
  nv.createOnLocationChange();
  nv.drawScene();
  queueStatus();
}

function presets(list) {
  const box = $("presets");
  box.innerHTML = "";
  for (const p of list) {
    const b = document.createElement("button");
    b.innerHTML = `${p.name} <span class="muted">${p.key}</span>`;
    b.title = `Window ${p.name}: W ${p.width} L ${p.level} (key ${p.key})`;
    b.dataset.preset = p.key;
    b.addEventListener("click", () => setWindow(p.level, p.width));
    box.appendChild(b);
  }
}

function onRender(args) {
  const first = state.args === null;
  if (first) mark("viewerArgs");
  state.args = args;
  if (wrap.style.height !== `${args.canvas_height}px`) {
    wrap.style.height = `${args.canvas_height}px`;  // NiiVue sizes the canvas to its parent
    nv.resizeListener();
  }
  if (first) presets(args.presets || []);
  const url = args.ct.url;
  state.loading = state.loading.then(async () => {
    try {
      if (url !== state.ctUrl) {
        state.ctUrl = url;
        await loadStudy(args);
      } else {
        await syncOverlays(args.overlays || []);
      }
      navigate(args.nav);
    } catch (err) {
      $("msg").style.display = "";
      $("msg").textContent = "The images could not be loaded in this browser (" + err + ").";
    }
    setHeight();
  });
  setHeight();
}

// --- events ----------------------------------------------------------------------------------------------
nv.onLocationChange = () => queueStatus();
nv.onIntensityChange = () => queueStatus();
nv.onMeasurementCompleted = (m) => {
  state.lastMeasureMm = m.distance;
  const el = $("measure");
  el.textContent = `Caliper ${m.distance.toFixed(1)} mm`;
  el.dataset.mm = m.distance.toFixed(2);
};

wrap.addEventListener("wheel", (e) => {
  if (e.ctrlKey || e.metaKey) {
    e.preventDefault();
    e.stopPropagation();
    zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15);
  } else {
    scrolling();  // (NiiVue's own wheel handler moves the slice and draws)
    queueStatus();
  }
}, { capture: true, passive: false });

wrap.addEventListener("pointerdown", (e) => {
  state.down = { x: e.clientX, y: e.clientY, t: performance.now(), button: e.button, mods: e.shiftKey || e.ctrlKey };
}, { capture: true });
wrap.addEventListener("pointerup", (e) => {
  const d = state.down;
  state.down = null;
  queueStatus();
  if (!d || d.button !== 0 || d.mods) return;
  if (Math.hypot(e.clientX - d.x, e.clientY - d.y) > 4 || performance.now() - d.t > 600) return;
  const f = fracAt(e);
  if (!f) return;
  nv.scene.crosshairPos = f;
  nv.createOnLocationChange();
  nv.drawScene();
  queueStatus();
  if (state.args && state.args.clickable) {
    const tile = nv.tileIndex(...eventCanvasPos(e));
    const plane = tile >= 0 ? PLANES[nv.screenSlices[tile].axCorSag] || "axial" : "axial";
    state.clickSeq += 1;
    const lps = rasToLps(nv.frac2mm(f));
    post("streamlit:setComponentValue", {
      value: { type: "click", seq: state.clickSeq, lps: lps.slice(0, 3), plane: plane, at: Date.now() },
      dataType: "json",
    });
  }
}, { capture: true });

wrap.addEventListener("mousemove", (e) => {
  const pos = eventCanvasPos(e);
  const t = nv.tileIndex(pos[0], pos[1]);
  if (t >= 0 && nv.screenSlices[t]) state.plane = nv.screenSlices[t].axCorSag;
  probe(e);
});
wrap.addEventListener("mouseleave", () => { state.hover = null; queueStatus(); });
wrap.addEventListener("mouseenter", () => {
  // take the keyboard for the arrow keys, unless the reader is typing in the page
  let typing = false;
  try {
    const a = window.parent.document.activeElement;
    typing = !!a && (a.tagName === "TEXTAREA" || (a.tagName === "INPUT" && a.type !== "checkbox"));
  } catch (err) { /* not same-origin */ }
  if (!typing) canvas.focus({ preventScroll: true });
});

function step(n) {
  scrolling();
  const plane = state.plane || 0;  // 0 axial (z), 1 coronal (y), 2 sagittal (x), in NiiVue's RAS voxels
  const v = [0, 0, 0];
  v[[2, 1, 0][plane] ?? 2] = n;
  nv.moveCrosshairInVox(v[0], v[1], v[2]);
  queueStatus();
}

function onKey(e) {
  if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key;
  const ov = [...state.overlays.entries()].find(([, o]) => o.spec.key === k.toLowerCase());
  const preset = (state.args && state.args.presets || []).find((p) => p.key === k);
  let handled = true;
  if (k === "ArrowUp" || k === "ArrowRight") step(1);
  else if (k === "ArrowDown" || k === "ArrowLeft") step(-1);
  else if (k === "PageUp") step(10);
  else if (k === "PageDown") step(-10);
  else if (preset) setWindow(preset.level, preset.width);
  else if (k === "w" || k === "W") setTool("window");
  else if (k === "m" || k === "M") setTool("measure");
  else if (k === "p" || k === "P") setTool("pan");
  else if (k === "+" || k === "=") zoom(1.25);
  else if (k === "-") zoom(0.8);
  else if (k === "r" || k === "R") reset();
  else if (k === "o" || k === "O") toggleOutline();
  else if (ov) overlayVisible(ov[0], !ov[1].on);
  else handled = false;
  if (handled) {
    e.preventDefault();
    e.stopImmediatePropagation();
  } else {
    // the page's own keyboard map (next finding, confirm, ...) should still work with the viewer focused
    try {
      window.parent.document.dispatchEvent(new KeyboardEvent("keydown", { key: k, code: e.code, shiftKey: e.shiftKey, bubbles: true }));
    } catch (err) { /* not same-origin */ }
  }
}
document.addEventListener("keydown", onKey, { capture: true });
document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
$("zoom-in").addEventListener("click", () => zoom(1.25));
$("zoom-out").addEventListener("click", () => zoom(0.8));
$("reset").addEventListener("click", reset);

// test and benchmark hooks: the viewer's state, and one timed slice step (key press to finished frame)
window.triageViewer = {
  nv: nv, state: state, scrollRes: scrollRes,
  settle: settle,
  timedFullFrame() {  // the still image at full resolution, as drawn when scrolling stops
    settle();
    const t = performance.now();
    nv.drawScene();
    nv.gl.readPixels(0, 0, 1, 1, nv.gl.RGBA, nv.gl.UNSIGNED_BYTE, new Uint8Array(4));
    return performance.now() - t;
  },
  marks() { return Object.assign({}, FIRST.marks, state.marks); },
  timedStep(n) {
    const t = performance.now();
    step(n);
    const px = new Uint8Array(4);
    nv.gl.readPixels(0, 0, 1, 1, nv.gl.RGBA, nv.gl.UNSIGNED_BYTE, px);  // waits until the frame is drawn
    return performance.now() - t;
  },
};

nv.attachToCanvas(canvas).then(() => {
  mark("attached");
  detectSoftware(nv.gl);
  nv.setSliceType(NV.SLICE_TYPE.MULTIPLANAR);  // (no volume yet: nothing to render)
  setTool("window");
  // first.js answered Streamlit and holds the latest args; from now on the render messages come here
  FIRST.onRender = onRender;
  if (FIRST.args) onRender(FIRST.args);
  else post("streamlit:componentReady", { apiVersion: 1 });
});
