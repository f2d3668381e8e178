"use strict";
/*
 * The first image, before the viewer: this small script answers Streamlit first (componentReady), draws the
 * server's PNG of the opening axial slice (``first_image`` in the args: that slice of the CT, in the opening
 * window, one pixel per voxel) where NiiVue's axial tile will be, and only then loads NiiVue (2.3 MB of script)
 * and viewer.js. NiiVue needs the whole study in its 3D textures before its first frame, which takes seconds in
 * software WebGL; viewer.js hides this image when NiiVue has drawn its own. It keeps the latest args for
 * viewer.js, which takes over the message handling (window.triageFirst.onRender).
 */
window.triageFirst = (function () {
  const self = { args: null, onRender: null, k: null, marks: {}, hiddenUrl: null };
  const mark = (name) => { self.marks[name] = Math.round(performance.timeOrigin + performance.now()); };
  let started = false;

  function loadViewer() {
    if (started) return;
    started = true;
    for (const src of ["niivue-0.69.0.umd.js", "viewer.js"]) {
      const s = document.createElement("script");
      s.src = src;
      s.async = false;  // in this order
      document.body.appendChild(s);
    }
  }

  // Where NiiVue puts the axial image in its multiplanar layout with the axial hero tile (viewer.js:
  // heroImageFraction 0.6): the left 60 % of the canvas, the image fitted to its size in mm and centred.
  function place(canvas, mm) {
    const box = canvas.parentElement.getBoundingClientRect();
    const heroW = box.width * 0.6, h = box.height;
    const scale = Math.min(heroW / mm[0], h / mm[1]);
    const w = mm[0] * scale, hh = mm[1] * scale;
    return [(heroW - w) / 2, (h - hh) / 2, w, hh, box.width, box.height];
  }

  function draw(info) {
    self.shownUrl = info.url;
    const img = new Image();
    img.onload = () => {
      if (self.hiddenUrl === info.url) return;  // the viewer was quicker
      const canvas = document.getElementById("first");
      const wrap = canvas.parentElement;
      if (self.args && wrap.style.height !== `${self.args.canvas_height}px`) wrap.style.height = `${self.args.canvas_height}px`;
      const [x, y, w, h, cw, ch] = place(canvas, info.mm);
      const dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(cw * dpr);
      canvas.height = Math.round(ch * dpr);
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(img, x * dpr, y * dpr, w * dpr, h * dpr);
      canvas.style.display = "";
      self.k = info.k;
      canvas.dataset.k = info.k;
      // on screen after the next paint: two animation frames (the mark is the browser clock's, for the bench);
      // NiiVue's script (parsing it holds the page ~0.3 s) is loaded only then
      requestAnimationFrame(() => requestAnimationFrame(() => {
        mark("first");
        document.body.dataset.firstImage = "1";
        loadViewer();
      }));
      window.parent.postMessage({ isStreamlitMessage: true, type: "streamlit:setFrameHeight", height: document.body.scrollHeight }, "*");
      const msg = document.getElementById("msg");
      msg.textContent = "Loading the study… (a first image: scrolling starts when the whole study is in)";
      msg.style.top = "auto"; msg.style.bottom = "6px";
    };
    img.onerror = loadViewer;
    img.src = info.url;
  }

  // for viewer.js: a new study in the same frame shows its first image too, and the viewer hides it when it has drawn
  self.show = (info) => { self.hiddenUrl = null; document.body.dataset.firstImage = "0"; draw(info); };
  self.hide = () => {
    self.hiddenUrl = self.args && self.args.first_image ? self.args.first_image.url : null;
    document.getElementById("first").style.display = "none";
  };

  window.addEventListener("message", (event) => {
    if (!(event.data && event.data.type === "streamlit:render")) return;
    // volume_viewer.py sends its args as one JSON string ("spec"; see there why)
    const raw = event.data.args || {};
    const args = typeof raw.spec === "string" ? JSON.parse(raw.spec) : raw;
    const first = self.args === null;
    self.args = args;
    if (self.onRender) { self.onRender(args); return; }
    if (first) {
      mark("args");
      if (args.first_image) draw(args.first_image); else loadViewer();
      setTimeout(loadViewer, 1500);  // (never wait on the image for long)
    }
  });
  mark("script");
  window.parent.postMessage({ isStreamlitMessage: true, type: "streamlit:componentReady", apiVersion: 1 }, "*");
  window.parent.postMessage({ isStreamlitMessage: true, type: "streamlit:setFrameHeight", height: document.body.scrollHeight }, "*");
  return self;
}());
