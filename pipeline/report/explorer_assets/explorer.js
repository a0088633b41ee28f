// The explorer page of a visualize run (pipeline/report/explorer.py writes the data; docs/units-explorer.md).
// Plain JavaScript, no dependency: every picture is drawn from the embedded bytes on a canvas.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("explorer-data").textContent);
  const H = D.size[0], W = D.size[1], SCALE = 4;
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const LUT = { viridis: bytes(D.luts.viridis), jet: bytes(D.luts.jet) };
  const cache = new Map();
  const dec = (b64) => { let v = cache.get(b64); if (!v) { v = bytes(b64); cache.set(b64, v); } return v; };
  const state = { image: 0, layer: null, unit: null };

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const kid of kids) if (kid != null) e.append(kid);
    return e;
  }
  function canvas(h, w, cls) { const c = el("canvas", cls ? { class: cls } : {}); c.width = w; c.height = h; return c; }
  function put(c, rgba, h, w) { c.getContext("2d").putImageData(new ImageData(rgba, w, h), 0, 0); return c; }
  function rgbCanvas(rgb, h, w, cls) {
    const out = new Uint8ClampedArray(h * w * 4);
    for (let p = 0; p < h * w; p++) { out[4 * p] = rgb[3 * p]; out[4 * p + 1] = rgb[3 * p + 1]; out[4 * p + 2] = rgb[3 * p + 2]; out[4 * p + 3] = 255; }
    return put(canvas(h, w, cls), out, h, w);
  }
  function lutCanvas(q, offset, h, w, lut, cls) {
    const out = new Uint8ClampedArray(h * w * 4);
    for (let p = 0; p < h * w; p++) { const v = q[offset + p]; out[4 * p] = lut[3 * v]; out[4 * p + 1] = lut[3 * v + 1]; out[4 * p + 2] = lut[3 * v + 2]; out[4 * p + 3] = 255; }
    return put(canvas(h, w, cls), out, h, w);
  }
  // the attribution map over the image in grey (each pixel's max over the channels, stretched to the
  // image's min..max), opacity alpha x map, as the Grad-CAM figures; the mask outline in magenta
  function overlayCanvas(rgb, q, mask) {
    const n = H * W, grey = new Float32Array(n);
    let lo = Infinity, hi = -Infinity;
    for (let p = 0; p < n; p++) { const v = Math.max(rgb[3 * p], rgb[3 * p + 1], rgb[3 * p + 2]) / 255; grey[p] = v; lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const out = new Uint8ClampedArray(n * 4), lut = LUT.jet;
    for (let p = 0; p < n; p++) {
      const g = hi > lo ? (grey[p] - lo) / (hi - lo) : grey[p], m = q[p] / 255, a = D.alpha * m;
      for (let ch = 0; ch < 3; ch++) out[4 * p + ch] = Math.round(((1 - a) * g + a * lut[3 * q[p] + ch] / 255) * 255);
      out[4 * p + 3] = 255;
    }
    const small = put(canvas(H, W), out, H, W);
    const big = canvas(H * SCALE, W * SCALE);
    const ctx = big.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, W * SCALE, H * SCALE);
    if (mask) {  // outline on the pixel edges between mask and background
      ctx.strokeStyle = "#ff00ff"; ctx.lineWidth = 1; ctx.beginPath();
      ctx.translate(0.5, 0.5);  // a 1-px line on pixel row/column y * SCALE, not smeared over two
      const at = (y, x) => y >= 0 && y < H && x >= 0 && x < W && mask[y * W + x] > 0;
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
        if (!at(y, x)) continue;
        if (!at(y - 1, x)) { ctx.moveTo(x * SCALE, y * SCALE); ctx.lineTo((x + 1) * SCALE, y * SCALE); }
        if (!at(y + 1, x)) { ctx.moveTo(x * SCALE, (y + 1) * SCALE); ctx.lineTo((x + 1) * SCALE, (y + 1) * SCALE); }
        if (!at(y, x - 1)) { ctx.moveTo(x * SCALE, y * SCALE); ctx.lineTo(x * SCALE, (y + 1) * SCALE); }
        if (!at(y, x + 1)) { ctx.moveTo((x + 1) * SCALE, y * SCALE); ctx.lineTo((x + 1) * SCALE, (y + 1) * SCALE); }
      }
      ctx.stroke();
    }
    return big;
  }
  const pct = (p) => p.toFixed(2);
  function predLine(i, head) { const h = D.heads[head]; return `${h.names[h.pred[i]]} (${pct(h.prob[i])})`; }

  // ---- layout
  const grid = el("div", { id: "grid" });
  const panels = el("div", { id: "panels" });
  const heads = Object.keys(D.heads);
  document.body.append(
    el("header", {}, el("h1", { text: `Explorer: ${D.title}` }),
      el("p", {}, `${D.images.length} images; jobs ${D.jobs.join(", ")}. Click an image (or step with `,
        el("kbd", { text: "\u2190" }), " ", el("kbd", { text: "\u2192" }),
        "); click a channel tile for that unit's optimized picture and dataset examples.")),
    el("main", {}, grid, panels));

  D.images.forEach((im, i) => {
    const cap = el("div", { class: "cap" }, el("b", { text: `#${i} ${im.truth}` }), el("br"), im.source);
    for (const h of heads) cap.append(el("br"), `${h}: ${predLine(i, h)}`);
    grid.append(el("div", { class: "thumb", id: `thumb-${i}`, "data-index": i, onclick: () => select(i) },
      rgbCanvas(dec(im.rgb), H, W), cap));
  });

  const secImage = el("section", { id: "image-panel" });
  const secActs = el("section", { id: "activations-panel" });
  const secAttr = el("section", { id: "attribution-panel" });
  const secUnit = el("section", { id: "unit-panel" });
  panels.append(secImage, secActs, secAttr, secUnit);

  const attrLayers = [...new Set(D.attribution.map((a) => a.layer))];
  state.layer = attrLayers.find((l) => l !== "input") || attrLayers[0] || (D.layers[0] && D.layers[0].name);

  function classUnitLayer(head) {
    const names = Object.keys(D.units).filter((l) => D.units[l].kind === "class");
    return names.find((l) => l === `heads.${head}`) || (names.length === 1 ? names[0] : null);
  }

  function drawImagePanel() {
    const i = state.image, im = D.images[i];
    const table = el("table", { class: "preds" }, el("tr", {}, el("th", { text: "head" }), el("th", { text: "prediction (probability)" }), el("th", { text: "" })));
    for (const h of heads) {
      const ul = classUnitLayer(h), pred = D.heads[h].pred[i];
      table.append(el("tr", {}, el("td", { text: h }), el("td", { text: predLine(i, h) }),
        el("td", {}, ul ? el("a", { href: "#", class: "class-unit", onclick: (e) => { e.preventDefault(); selectUnit(ul, pred); } },
          "top test images of this class") : null)));
    }
    secImage.replaceChildren(el("h2", { text: `Image #${i}: ${im.truth}` }),
      el("div", { id: "image-view" }, rgbCanvas(dec(im.rgb), H, W, "input"),
        el("div", {}, el("p", {}, `source ${im.source}; true class ${im.truth}`), table)));
  }

  function drawActivations() {
    const i = state.image;
    secActs.replaceChildren(el("h2", { text: "Activations per layer (tiles on each layer's shared scale, viridis)" }));
    if (!D.layers.length) { secActs.append(el("p", { class: "note", text: "This run has no activations (job=activations or job=all)." })); return; }
    for (const L of D.layers) {
      const [C, h, w] = L.shape, q = dec(L.acts[i]);
      const tiles = el("div", { class: "tiles" });
      for (let c = 0; c < C; c++) {
        const t = lutCanvas(q, c * h * w, h, w, LUT.viridis, "tile");
        t.dataset.layer = L.name; t.dataset.channel = c; t.title = `${L.name} channel ${c}`;
        if (state.unit && state.unit.tile === L.name && state.unit.c === c) t.classList.add("selected");
        t.addEventListener("click", () => selectUnit(L.name, c));
        tiles.append(t);
      }
      secActs.append(el("div", { class: "layer", "data-layer": L.name },
        el("h3", {}, L.name, el("span", { text: ` ${C} x ${h} x ${w}; scale ${L.lo.toPrecision(3)} .. ${L.hi.toPrecision(3)}` })), tiles));
    }
  }

  function drawAttribution() {
    const i = state.image;
    const pick = el("select", { id: "layer-select", onchange: (e) => { state.layer = e.target.value; drawAttribution(); } });
    for (const l of attrLayers) { const o = el("option", { value: l, text: l }); if (l === state.layer) o.selected = true; pick.append(o); }
    secAttr.replaceChildren(el("h2", {}, "Attribution maps at layer ", pick));
    if (!D.attribution.length) { secAttr.append(el("p", { class: "note", text: "This run computed no attribution map (job=gradcam, job=attribution or job=all)." })); return; }
    const rows = [...new Set(D.attribution.map((a) => a.method + (a.target ? ` (${a.target})` : "")))];
    const g = el("div", { class: "attr-grid" });
    g.style.gridTemplateColumns = `140px repeat(${heads.length || 1}, 130px)`;
    g.append(el("div"));
    for (const h of heads) g.append(el("div", { class: "hd", text: h }));
    const mask = D.masks ? dec(D.masks[i]) : null;
    for (const r of rows) {
      g.append(el("div", { class: "hd", text: r }));
      for (const h of heads) {
        const mine = D.attribution.filter((a) => a.method + (a.target ? ` (${a.target})` : "") === r && a.head === h);
        const a = mine.find((x) => x.layer === state.layer) || mine[0];
        if (!a) { g.append(el("div", { class: "cell note", text: "not computed" })); continue; }
        const c = overlayCanvas(dec(D.images[i].rgb), dec(a.maps[i]), mask);
        c.dataset.method = a.method; c.dataset.head = h; c.dataset.layer = a.layer; c.dataset.target = a.target || "";
        c.classList.add("attr");
        const names = D.heads[h] ? D.heads[h].names : [];
        g.append(el("div", { class: "cell" }, c,
          `${names[a.targets[i]] ?? a.targets[i]} p=${pct(a.probs[i])}` + (a.layer !== state.layer ? ` (at ${a.layer})` : "")));
      }
    }
    secAttr.append(g, el("p", { class: "note", text: "Each map per image min-max to [0, 1], jet over the image in grey (opacity 0.5 x map)" + (D.masks ? "; magenta: the line's ground-truth mask." : ".") }));
  }

  // a tile's unit: the layer's own, else the nearest earlier layer with as many units (conv -> bn -> relu)
  function unitLayer(name, c) {
    if (D.units[name] || (D.filters[name])) return name;
    const idx = D.layers.findIndex((l) => l.name === name), C = idx >= 0 ? D.layers[idx].shape[0] : -1;
    for (let j = idx - 1; j >= 0; j--) {
      const u = D.units[D.layers[j].name];
      if (u && u.values.length === C) return D.layers[j].name;
    }
    return name;
  }

  function selectUnit(tileLayer, c) {
    state.unit = { tile: tileLayer, layer: unitLayer(tileLayer, c), c };
    drawActivations(); drawUnit();
    secUnit.scrollIntoView({ block: "nearest" });
  }

  function drawUnit() {
    secUnit.replaceChildren(el("h2", { text: "Unit" }));
    if (!state.unit) { secUnit.append(el("p", { class: "note", text: "Click a channel tile (or a head's \u201ctop test images\u201d link) to see the unit's optimized picture and dataset examples." })); return; }
    const { tile, layer, c } = state.unit, U = D.units[layer];
    const isClass = U && U.kind === "class";
    const uname = isClass ? (U.class_names[c] ?? c) : `channel ${c}`;
    secUnit.replaceChildren(el("h2", { text: `${layer}: ${isClass ? "class" : ""} ${uname}` + (tile !== layer ? ` (the unit under ${tile})` : "") }));
    const body = el("div", { class: "examples", id: "unit-examples" });
    const F = D.filters[layer], obj = F && (F[isClass ? "class" : "channel"] || F.neuron || Object.values(F)[0]);
    const row = obj ? obj.targets.indexOf(c) : -1;
    if (row >= 0) {
      const [ph, pw] = obj.size;
      body.append(el("div", { class: "example picture" }, rgbCanvas(dec(obj.pictures[row]), ph, pw), el("b", { text: "optimized picture" }), el("br"), `score ${obj.scores[row].toPrecision(3)}`));
    } else body.append(el("div", { class: "example note", text: "no optimized picture (job=filters)" }));
    if (U) {
      const [sh, sw] = U.size;
      for (let j = 0; j < U.k; j++) {
        const cv = rgbCanvas(dec(U.crops[c][j]), sh, sw);
        cv.dataset.index = U.indices[c][j];
        body.append(el("div", { class: "example crop" }, cv, el("b", { text: U.labels[c][j] }), el("br"), `test[${U.indices[c][j]}] ${U.values[c][j].toPrecision(3)}`));
      }
    }
    secUnit.append(body, el("p", { class: "note", text: U ? `The ${U.k} test images of ${U.images} with the highest ${isClass ? "logit" : "maximum of the channel"}` + (isClass ? " (whole images)." : `; crops: the ${U.rf}x${U.rf} px receptive field around the maximum.`) : "No dataset examples for this layer (job=units ranks the convolution layers and the heads)." }));
  }

  function select(i) {
    state.image = (i + D.images.length) % D.images.length;
    document.querySelectorAll(".thumb").forEach((t) => t.classList.toggle("selected", +t.dataset.index === state.image));
    drawImagePanel(); drawActivations(); drawAttribution();
    document.body.dataset.image = state.image;
  }
  document.addEventListener("keydown", (e) => {
    if (e.target && e.target.tagName === "SELECT") return;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") { select(state.image + 1); e.preventDefault(); }
    if (e.key === "ArrowLeft" || e.key === "ArrowUp") { select(state.image - 1); e.preventDefault(); }
  });
  select(0);
  drawUnit();
  document.body.dataset.ready = "1";
})();
