// The reference editor: one image on a canvas, the prompt of the active class drawn over it.
// Coordinates of prompts are the image's own pixels (x = column, y = row), as the API expects.
// Zoom (wheel, about the cursor) and pan (drag with Space held or the middle button) change only
// the view: the canvas's data-view attribute holds {scale, ox, oy, zoom} (screen = o + image * scale).

const HISTORY_LIMIT = 25;
const ZOOM_LIMITS = [0.25, 40];

// What the user marked on one image for one class: clicks/box/scribble, or a painted mask.
export class PromptState {
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.kind = null; // "clicks" | "mask" | null
    this.points = []; // [x, y, 1 object | 0 background]
    this.box = null; // [x0, y0, x1, y1]
    this.strokes = []; // [[x, y], ...] each
    this.mask = null; // canvas at image size; alpha > 0 = object
    this.history = [];
    this.future = []; // undone steps, for redo
    this.cleared = false; // the last edit was "Clear" (a fixed class cleared is no longer fixed)
    // mask strokes not yet sent, as edits of the mask the server holds (sansa/web/strokes.py);
    // null: the server's mask is not known to match, the whole mask goes as a PNG next time
    this.ops = null;
    // the mask as polygons (polygon tool), [{points: [[x, y], ...], hole}] in pixel indices, drawn
    // at pixel centres; null: not known (fetched from the server). `polygonsPending`: the mask is
    // these polygons and they are not sent yet (they go as the prompt, sansa/web/polygons.py)
    this.polygons = null;
    this.polygonsPending = false;
  }

  maskCanvas() {
    if (!this.mask) {
      this.mask = document.createElement("canvas");
      this.mask.width = this.width;
      this.mask.height = this.height;
    }
    return this.mask;
  }

  snapshot() {
    const mask = this.mask ? this.mask.getContext("2d").getImageData(0, 0, this.width, this.height) : null;
    return { kind: this.kind, points: structuredClone(this.points), box: this.box && [...this.box],
      strokes: structuredClone(this.strokes), mask, polygons: structuredClone(this.polygons) };
  }

  push() {
    this.history.push(this.snapshot());
    if (this.history.length > HISTORY_LIMIT) this.history.shift();
    this.future = [];
  }

  undo() {
    const last = this.history.pop();
    if (!last) return false;
    this.future.push(this.snapshot());
    this.restore(last);
    return true;
  }

  redo() {
    const next = this.future.pop();
    if (!next) return false;
    this.history.push(this.snapshot());
    this.restore(next);
    return true;
  }

  restore(snap) {
    this.ops = null;
    this.polygonsPending = false;
    Object.assign(this, { kind: snap.kind, points: snap.points, box: snap.box, strokes: snap.strokes,
      polygons: snap.polygons ?? null });
    if (snap.mask) this.maskCanvas().getContext("2d").putImageData(snap.mask, 0, 0);
    else if (this.mask) this.mask.getContext("2d").clearRect(0, 0, this.width, this.height);
  }

  // The prompt a reference was saved with (from the server), as the state to edit further.
  loadPrompt(prompt) {
    this.kind = "clicks";
    const labels = prompt.point_labels || [];
    this.points = (prompt.points || []).map(([x, y], i) => [x, y, labels[i] ?? 1]);
    this.box = prompt.box ? [...prompt.box] : null;
    this.strokes = prompt.scribble ? structuredClone(prompt.scribble) : [];
  }

  clear() {
    this.ops = null;
    this.polygons = null;
    this.polygonsPending = false;
    this.kind = null;
    this.points = [];
    this.box = null;
    this.strokes = [];
    if (this.mask) this.mask.getContext("2d").clearRect(0, 0, this.width, this.height);
  }

  // Switch to `kind`; returns true when a prompt of the other kind was dropped.
  useKind(kind) {
    const dropped = this.kind !== null && this.kind !== kind && !this.isEmpty();
    if (this.kind !== kind) this.clear();
    if (kind === "mask" && this.ops === null && dropped === false && this.isEmpty()) this.ops = [];
    this.kind = kind;
    return dropped;
  }

  maskHasPixels() {
    if (!this.mask) return false;
    const data = this.mask.getContext("2d").getImageData(0, 0, this.width, this.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i]) return true;
    return false;
  }

  isEmpty() {
    if (this.kind === "mask") return !this.maskHasPixels();
    return !this.points.length && !this.box && !this.strokes.length;
  }

  // The prompt as the API's PromptIn, or null when nothing is marked.
  toPrompt() {
    if (this.isEmpty()) return null;
    if (this.kind === "mask" && this.polygonsPending) return { polygons: this.polygons };
    if (this.kind === "mask") return this.ops?.length ? { edits: [...this.ops] } : { mask_png: this.mask.toDataURL("image/png") };
    const prompt = {};
    if (this.points.length) {
      prompt.points = this.points.map(([x, y]) => [x, y]);
      prompt.point_labels = this.points.map((p) => p[2]);
    }
    if (this.box) prompt.box = this.box;
    if (this.strokes.length) prompt.scribble = this.strokes;
    return prompt;
  }

  // Take a mask image (any colours; alpha > 0 = object) as the painted mask (`polygons`: its
  // outlines, when known).
  loadMask(img, polygons = null) {
    this.polygons = polygons;
    this.polygonsPending = false;
    const ctx = this.maskCanvas().getContext("2d");
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.drawImage(img, 0, 0, this.width, this.height);
    const pixels = ctx.getImageData(0, 0, this.width, this.height);
    for (let i = 0; i < pixels.data.length; i += 4) {
      const on = pixels.data[i + 3] > 0 ? 255 : 0;
      pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = pixels.data[i + 3] = on;
    }
    ctx.putImageData(pixels, 0, 0);
    this.kind = "mask";
    this.ops = []; // the server's mask, as it is
  }

  // A stroke or polygon drawn on the mask, kept to send as an edit (see ops). After polygons not
  // yet sent, the whole mask goes as a PNG; the polygons are fetched again once it is saved.
  record(op) {
    if (this.polygonsPending) this.ops = null;
    this.polygonsPending = false;
    this.polygons = null;
    if (this.ops !== null) this.ops.push(op);
  }

  // The mask becomes `rings` (filled in order, holes cut out), to send as polygons.
  setPolygons(rings) {
    this.polygons = rings;
    this.polygonsPending = true;
    this.ops = [];
    const ctx = this.maskCanvas().getContext("2d");
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.fillStyle = "#fff";
    for (const ring of rings) {
      ctx.globalCompositeOperation = ring.hole ? "destination-out" : "source-over";
      ringPath(ctx, ring.points);
      ctx.fill();
    }
    ctx.globalCompositeOperation = "source-over";
  }
}

// A closed path through pixel centres (vertices are pixel indices, as the server fills them).
function ringPath(ctx, points) {
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
  ctx.closePath();
}

const HINTS = {
  point: "Click the object · right-click (or Shift+click) the background",
  box: "Drag a box around the object",
  scribble: "Draw a stroke over the object",
  brush: "Paint the object · right-drag erases · [ ] size",
  lasso: "Draw around the object to fill it · Shift cuts out",
  eraser: "Erase from the mask · [ ] size",
  polygon: "Click to add vertices, click the first one or Enter to close (Shift: a hole) · drag a vertex · click an edge adds one · right-click deletes one",
};
const GRAB_PX = 8; // screen pixels within which a vertex or an edge is grabbed

export class Editor {
  // hooks: onChange(state) after each edit; masksFor(image) -> [{label, color, img}] decoded masks;
  // notify(text) for messages.
  constructor(canvas, hooks) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.hooks = hooks;
    this.states = new Map();
    this.image = null; // {name, img, width, height}
    this.label = null;
    this.color = "#ffffff";
    this.tool = "box";
    this.brush = null; // radius in image pixels (null: chosen for the image when it opens)
    this.opacity = 0.55; // of the masks drawn over the photo (the slider)
    this.drag = null;
    this.hover = null;
    this.frame = 0;
    this.zoom = 1; // 1 = the image fits the canvas
    this.pan = [0, 0]; // screen pixels, from the fitted position
    this.spaceHeld = false;
    this.overlay = null; // an image drawn over the photo (review: the predicted masks)
    this.layer = null; // the features layer (PCA map), drawn over the photo, under the overlay
    this.readOnly = false; // review: the view can be zoomed and panned, nothing drawn
    this.showPolygons = false; // draw the active class's mask as polygons with any tool
    this.draft = null; // the polygon being drawn: {points, hole}
    canvas.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    window.addEventListener("keydown", (e) => { if (e.key === " " && !e.target.closest("input, select, textarea")) this.space(true, e); });
    window.addEventListener("keyup", (e) => { if (e.key === " ") this.space(false, e); });
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("pointerleave", () => { this.hover = null; this.redraw(); });
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    new ResizeObserver(() => this.redraw()).observe(canvas);
  }

  get hint() { return HINTS[this.tool]; }

  key(name = this.image?.name, label = this.label) { return `${name}\n${label}`; }

  state(name = this.image?.name, label = this.label) {
    if (!name || !label) return null;
    const key = this.key(name, label);
    if (!this.states.has(key)) {
      const size = name === this.image?.name ? this.image : this.hooks.sizeOf(name);
      this.states.set(key, new PromptState(size.width, size.height));
    }
    return this.states.get(key);
  }

  open(name, img) {
    if (this.image?.name !== name) this.fit(false);
    this.image = { name, img, width: img.naturalWidth, height: img.naturalHeight };
    if (this.brush === null) this.brush = Math.max(1, Math.round(Math.max(img.naturalWidth, img.naturalHeight) / 50));
    this.drag = null;
    this.redraw();
  }

  close() {
    this.image = null;
    this.overlay = null;
    this.layer = null;
    this.redraw();
  }

  setOverlay(img) {
    this.overlay = img;
    this.redraw();
  }

  setLayer(img) {
    this.layer = img;
    this.redraw();
  }

  // Back to the whole image in view.
  fit(redraw = true) {
    this.zoom = 1;
    this.pan = [0, 0];
    if (redraw) this.redraw();
  }

  // Zoom by `factor` keeping the image point under screen point (sx, sy) (canvas pixels) in place.
  zoomAt(factor, sx, sy) {
    if (!this.image) return;
    const before = this.view();
    const px = (sx - before.ox) / before.scale, py = (sy - before.oy) / before.scale;
    this.zoom = Math.min(Math.max(this.zoom * factor, ZOOM_LIMITS[0]), ZOOM_LIMITS[1]);
    const scale = before.fit * this.zoom;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    this.pan = [sx - px * scale - (w - this.image.width * scale) / 2, sy - py * scale - (h - this.image.height * scale) / 2];
    this.redraw();
  }

  wheel(e) {
    if (!this.image) return;
    e.preventDefault();
    const rect = this.canvas.getBoundingClientRect();
    this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
  }

  space(held, e) {
    if (this.spaceHeld === held) { if (held) e.preventDefault(); return; }
    this.spaceHeld = held;
    e.preventDefault(); // no page scroll, no click of a focused button
    this.canvas.classList.toggle("grab", held);
  }

  renameLabel(old, name) {
    for (const [key, state] of [...this.states]) {
      const [image, label] = key.split("\n");
      if (label === old) { this.states.delete(key); this.states.set(this.key(image, name), state); }
    }
    if (this.label === old) this.label = name;
  }

  reset() { this.states.clear(); }

  setClass(label, color) {
    this.label = label;
    this.color = color;
    this.redraw();
  }

  setTool(tool) {
    this.tool = tool;
    this.drag = null;
    this.draft = null;
    this.redraw();
  }

  // Whether the active class's polygons are wanted (shown or edited) and not known yet.
  wantsPolygons() { return (this.tool === "polygon" || this.showPolygons) && !!this.image && !!this.label; }

  forget(name, label) { this.states.delete(this.key(name, label)); }

  // Undo, redo or clear. Undo of a saved change is the server's (hooks.undoSaved: exactly the mask
  // it had before, also after a reload); an edit not saved yet is undone here.
  edit(action) {
    const state = this.state();
    if (!state || this.readOnly) return;
    this.draft = null;
    if (action === "undo" && this.hooks.undoSaved(this.image.name, this.label, state)) return;
    const done = action === "undo" ? state.undo() : action === "redo" ? state.redo() : (state.push(), state.clear(), true);
    state.cleared = action === "clear";
    if (done) this.changed(state, action === "undo" ? -1 : 1);
  }

  // The server's reference after it undid a change (`ref`: null, none), as the state to edit; what
  // was shown can be redone.
  undone(state, ref, img) {
    const shown = state.snapshot();
    state.history.pop(); // the page's copy of the state the server went back to
    state.clear();
    if (ref?.prompt) state.loadPrompt(ref.prompt); else if (ref) state.loadMask(img);
    state.future.push(shown);
    this.redraw();
  }

  // `step`: +1 a new undo step (an edit, a redo), -1 one taken back (undo)
  changed(state, step = 1) {
    this.redraw();
    this.hooks.onChange(state, this.image.name, this.label, step);
  }

  // -- geometry ------------------------------------------------------------------------------
  view() {
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    const { width, height } = this.image;
    const fit = Math.min((w - 32) / width, (h - 32) / height);
    const scale = fit * this.zoom;
    return { fit, scale, ox: (w - width * scale) / 2 + this.pan[0], oy: (h - height * scale) / 2 + this.pan[1] };
  }

  toImage(e) {
    const rect = this.canvas.getBoundingClientRect();
    const { scale, ox, oy } = this.view();
    const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
    return [clamp((e.clientX - rect.left - ox) / scale, this.image.width),
      clamp((e.clientY - rect.top - oy) / scale, this.image.height)];
  }

  // -- pointer -------------------------------------------------------------------------------
  down(e) {
    if (!this.image) return;
    if (e.button === 1 || this.spaceHeld || (this.readOnly && e.button === 0)) {
      e.preventDefault();
      this.canvas.setPointerCapture(e.pointerId);
      this.drag = { type: "pan", from: [e.clientX, e.clientY], pan: [...this.pan] };
      this.canvas.classList.add("panning");
      return;
    }
    if (!this.label || this.readOnly) return;
    const p = this.toImage(e);
    const state = this.state();
    const negative = e.button === 2 || e.shiftKey;
    this.canvas.setPointerCapture(e.pointerId);
    if (this.tool === "point") {
      if (!this.begin(state, "clicks")) return;
      state.points.push([round(p[0]), round(p[1]), negative ? 0 : 1]);
      this.changed(state);
    } else if (this.tool === "box") {
      this.drag = { type: "box", start: p, end: p };
    } else if (this.tool === "scribble") {
      this.drag = { type: "stroke", points: [p] };
    } else if (this.tool === "lasso") {
      this.drag = { type: "lasso", points: [p], cut: negative };
    } else if (this.tool === "polygon") {
      this.polygonDown(state, p, e);
    } else {
      this.begin(state, "mask");
      this.drag = { type: "paint", erase: this.tool === "eraser" || e.button === 2, last: p, points: [p] };
      this.paint(state, p, p);
    }
  }

  move(e) {
    if (!this.image) return;
    const p = this.toImage(e);
    this.hover = p;
    const drag = this.drag;
    if (drag?.type === "pan") this.pan = [drag.pan[0] + e.clientX - drag.from[0], drag.pan[1] + e.clientY - drag.from[1]];
    else if (drag?.type === "box") drag.end = p;
    else if (drag?.type === "vertex") drag.rings[drag.ring].points[drag.index] = vertexOf(p);
    else if (drag?.type === "stroke" || drag?.type === "lasso") drag.points.push(p);
    else if (drag?.type === "paint") {
      this.paint(this.state(), drag.last, p);
      drag.last = p;
      drag.points.push(p);
    }
    this.redraw();
  }

  up() {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    if (drag.type === "pan") { this.canvas.classList.remove("panning"); return this.redraw(); }
    const state = this.state();
    const minSide = 4 / this.view().scale;
    if (drag.type === "box") {
      const [x0, x1] = [drag.start[0], drag.end[0]].sort((a, b) => a - b);
      const [y0, y1] = [drag.start[1], drag.end[1]].sort((a, b) => a - b);
      if (x1 - x0 < minSide || y1 - y0 < minSide) return this.redraw();
      if (!this.begin(state, "clicks")) return this.redraw();
      state.box = [x0, y0, x1, y1].map(round);
    } else if (drag.type === "stroke") {
      if (!this.begin(state, "clicks")) return this.redraw();
      state.strokes.push(drag.points.map(([x, y]) => [round(x), round(y)]));
    } else if (drag.type === "lasso") {
      if (drag.points.length < 3) return this.redraw();
      this.begin(state, "mask");
      const ctx = state.maskCanvas().getContext("2d");
      ctx.globalCompositeOperation = drag.cut ? "destination-out" : "source-over";
      ctx.fillStyle = "#fff";
      ctx.beginPath();
      drag.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
      ctx.fill();
      ctx.globalCompositeOperation = "source-over";
      state.record({ op: drag.cut ? "cut" : "fill", points: drag.points.map(([x, y]) => [round(x), round(y)]) });
    } else if (drag.type === "paint") {
      state.record({ op: drag.erase ? "erase" : "paint", width: 2 * this.brush,
        points: drag.points.map(([x, y]) => [round(x), round(y)]) });
    } else if (drag.type === "vertex") {
      if (JSON.stringify(drag.rings) === JSON.stringify(state.polygons)) return this.redraw(); // a click, no move
      return this.commitPolygons(state, drag.rings);
    }
    this.changed(state);
  }

  // -- polygon tool ----------------------------------------------------------------------------
  // The polygons to edit: the mask's (fetched), the prediction's on a target (it becomes the mask
  // to correct), or none when there is no mask yet; null while they are fetched (nothing changes).
  editablePolygons(state) {
    if (state.polygons) return state.polygons;
    const { name } = this.image;
    if (state.isEmpty() && !this.hooks.hasReference(name, this.label)) {
      if (!this.hooks.fromPrediction(name, this.label)) return [];
      this.hooks.notify("Starting from the prediction…");
      return null;
    }
    this.hooks.notify("Loading the mask's outlines…");
    return null;
  }

  polygonDown(state, p, e) {
    const rings = this.editablePolygons(state);
    if (rings === null) return;
    const near = this.nearestVertex(rings, p);
    const remove = e.button === 2 || e.altKey;
    if (near && remove) {
      const next = structuredClone(rings);
      const ring = next[near.ring];
      ring.points.splice(near.index, 1);
      if (ring.points.length < 3) next.splice(near.ring, 1); // a ring of two vertices is gone
      return this.commitPolygons(state, next);
    }
    if (near && !this.draft) {
      this.drag = { type: "vertex", rings: structuredClone(rings), ring: near.ring, index: near.index };
      return;
    }
    const edge = !this.draft && !remove && this.nearestEdge(rings, p);
    if (edge) { // a new vertex on the edge, dragged from there
      const next = structuredClone(rings);
      next[edge.ring].points.splice(edge.index + 1, 0, vertexOf(p));
      this.drag = { type: "vertex", rings: next, ring: edge.ring, index: edge.index + 1 };
      return;
    }
    if (remove) return;
    if (!this.draft) this.draft = { points: [], hole: e.shiftKey };
    const first = this.draft.points[0];
    if (first && this.draft.points.length >= 3 && this.screenDistance(first, vertexOf(p)) <= GRAB_PX) return this.closeDraft();
    this.draft.points.push(vertexOf(p));
    this.redraw();
  }

  // Enter: the polygon being drawn is closed (three vertices at least) and added to the mask.
  closeDraft() {
    const draft = this.draft, state = this.state();
    this.draft = null;
    if (!draft || draft.points.length < 3 || !state) return this.redraw();
    const rings = this.editablePolygons(state);
    if (rings !== null) this.commitPolygons(state, [...structuredClone(rings), draft]);
  }

  undoVertex() {
    this.draft?.points.pop();
    if (this.draft && !this.draft.points.length) this.draft = null;
    this.redraw();
  }

  cancelDraft() {
    if (!this.draft) return false;
    this.draft = null;
    this.redraw();
    return true;
  }

  // One undo step; the mask becomes the polygons (sent as such, sansa/web/polygons.py).
  commitPolygons(state, rings) {
    if (!this.begin(state, "mask")) return this.redraw();
    state.setPolygons(rings);
    this.changed(state);
  }

  screenDistance(a, b) { return Math.hypot(a[0] - b[0], a[1] - b[1]) * this.view().scale; }

  nearestVertex(rings, p) {
    const v = vertexOf(p);
    let best = null;
    rings.forEach((ring, r) => ring.points.forEach((q, i) => {
      const d = this.screenDistance(q, v);
      if (d <= GRAB_PX && (!best || d < best.d)) best = { ring: r, index: i, d };
    }));
    return best;
  }

  nearestEdge(rings, p) {
    const v = vertexOf(p);
    let best = null;
    rings.forEach((ring, r) => ring.points.forEach((a, i) => {
      const b = ring.points[(i + 1) % ring.points.length];
      const d = this.screenDistance(closestOnSegment(v, a, b), v);
      if (d <= GRAB_PX && (!best || d < best.d)) best = { ring: r, index: i, d };
    }));
    return best;
  }

  // One undo step per action; a prompt of the other kind is dropped (undo restores it). A fixed
  // mask is never dropped for clicks or a box: returns false and says how to go on.
  begin(state, kind) {
    if (kind === "clicks" && state.kind === "mask" && !state.isEmpty() && this.hooks.isFixed(this.image.name, this.label)) {
      this.hooks.notify("This is a fixed mask: correct it with the brush, lasso or eraser (Clear it first to use clicks or a box)");
      return false;
    }
    state.push();
    state.cleared = false;
    if (state.useKind(kind)) {
      this.hooks.notify(kind === "mask" ? "Painting a mask: the clicks/box/scribble were cleared (Z to undo)"
        : "Clicks/box/scribble: the painted mask was cleared (Z to undo)");
    }
    return true;
  }

  paint(state, from, to) {
    const ctx = state.maskCanvas().getContext("2d");
    ctx.globalCompositeOperation = this.drag?.erase ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = "#fff";
    ctx.lineCap = "round";
    ctx.lineWidth = 2 * this.brush;
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
    ctx.globalCompositeOperation = "source-over";
  }

  // -- drawing -------------------------------------------------------------------------------
  redraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    if (this.canvas.width !== Math.round(w * dpr)) this.canvas.width = Math.round(w * dpr);
    if (this.canvas.height !== Math.round(h * dpr)) this.canvas.height = Math.round(h * dpr);
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!this.image) { delete this.canvas.dataset.view; return; }
    const { scale, ox, oy } = this.view();
    this.canvas.dataset.view = JSON.stringify({ scale, ox, oy, zoom: this.zoom });
    const { img, width, height, name } = this.image;
    ctx.save();
    ctx.shadowColor = "#0009";
    ctx.shadowBlur = 18;
    ctx.imageSmoothingEnabled = scale < 2; // zoomed in: see the pixels
    ctx.drawImage(img, ox, oy, width * scale, height * scale);
    ctx.restore();
    if (this.layer) {
      ctx.globalAlpha = 0.8;
      ctx.imageSmoothingEnabled = false; // one colour per feature cell
      ctx.drawImage(this.layer, ox, oy, width * scale, height * scale);
      ctx.globalAlpha = 1;
      ctx.imageSmoothingEnabled = scale < 2;
    }
    const strength = Math.min(1, this.opacity / 0.55); // the PNG masks carry their own translucency
    ctx.globalAlpha = strength;
    if (this.overlay) ctx.drawImage(this.overlay, ox, oy, width * scale, height * scale);
    const state = this.states.get(this.key());
    const painting = state?.kind === "mask";
    for (const m of this.hooks.masksFor(name)) {
      if (painting && m.label === this.label) continue;
      ctx.globalAlpha = strength * (m.label === this.label ? 1 : 0.6);
      ctx.drawImage(m.img, ox, oy, width * scale, height * scale);
    }
    ctx.globalAlpha = 1;
    ctx.save();
    ctx.translate(ox, oy);
    ctx.scale(scale, scale);
    if (painting) this.drawMask(ctx, state);
    if (state) this.drawPrompt(ctx, state, scale);
    this.drawPolygons(ctx, state, scale);
    this.drawDrag(ctx, scale);
    ctx.restore();
    this.drawCursor(ctx, scale, ox, oy);
  }

  drawMask(ctx, state) {
    const tint = this.tint || (this.tint = document.createElement("canvas"));
    tint.width = state.width;
    tint.height = state.height;
    const t = tint.getContext("2d");
    t.drawImage(state.mask, 0, 0);
    t.globalCompositeOperation = "source-in";
    t.fillStyle = this.color;
    t.fillRect(0, 0, state.width, state.height);
    ctx.globalAlpha = this.opacity;
    ctx.drawImage(tint, 0, 0);
    ctx.globalAlpha = 1;
  }

  drawPrompt(ctx, state, scale) {
    const px = 1 / scale;
    ctx.lineJoin = ctx.lineCap = "round";
    for (const stroke of state.strokes) {
      polyline(ctx, stroke);
      ctx.strokeStyle = "#000a";
      ctx.lineWidth = 6 * px;
      ctx.stroke();
      ctx.strokeStyle = this.color;
      ctx.lineWidth = 3 * px;
      ctx.stroke();
    }
    if (state.box) {
      const [x0, y0, x1, y1] = state.box;
      ctx.setLineDash([7 * px, 4 * px]);
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2 * px;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.setLineDash([]);
      ctx.strokeStyle = this.color;
      ctx.lineWidth = 1 * px;
      ctx.strokeRect(x0 - px, y0 - px, x1 - x0 + 2 * px, y1 - y0 + 2 * px);
    }
    for (const [x, y, positive] of state.points) {
      ctx.beginPath();
      ctx.arc(x, y, 7 * px, 0, 2 * Math.PI);
      ctx.fillStyle = positive ? "#2ecc8f" : "#ff5c6c";
      ctx.fill();
      ctx.lineWidth = 2 * px;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
      ctx.beginPath();
      ctx.moveTo(x - 3.5 * px, y);
      ctx.lineTo(x + 3.5 * px, y);
      if (positive) { ctx.moveTo(x, y - 3.5 * px); ctx.lineTo(x, y + 3.5 * px); }
      ctx.stroke();
    }
  }

  // The active class's polygons (while a vertex is dragged: as dragged) and the one being drawn;
  // the canvas's data-polygons attribute holds them as shown.
  drawPolygons(ctx, state, scale) {
    const show = this.tool === "polygon" || this.showPolygons;
    const rings = this.drag?.type === "vertex" ? this.drag.rings : state?.polygons;
    this.canvas.dataset.polygons = show && rings ? JSON.stringify(rings) : "";
    if (!show) return;
    const px = 1 / scale;
    for (const ring of rings || []) {
      ringPath(ctx, ring.points);
      ctx.setLineDash(ring.hole ? [6 * px, 4 * px] : []);
      ctx.strokeStyle = "#000a";
      ctx.lineWidth = 4 * px;
      ctx.stroke();
      ctx.strokeStyle = ring.hole ? "#fff" : this.color;
      ctx.lineWidth = 2 * px;
      ctx.stroke();
      ctx.setLineDash([]);
      if (this.tool === "polygon") for (const [x, y] of ring.points) vertexHandle(ctx, x, y, px, "#fff");
    }
    if (this.draft) {
      const points = this.hover ? [...this.draft.points, vertexOf(this.hover)] : this.draft.points;
      ctx.beginPath();
      points.forEach(([x, y], i) => (i ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
      ctx.strokeStyle = this.draft.hole ? "#ff5c6c" : this.color;
      ctx.lineWidth = 2 * px;
      ctx.stroke();
      this.draft.points.forEach(([x, y], i) => vertexHandle(ctx, x, y, px, i ? "#fff" : this.color));
    }
  }

  drawDrag(ctx, scale) {
    const drag = this.drag, px = 1 / scale;
    if (!drag) return;
    ctx.lineWidth = 2 * px;
    if (drag.type === "box") {
      const [x0, y0] = drag.start, [x1, y1] = drag.end;
      ctx.setLineDash([7 * px, 4 * px]);
      ctx.strokeStyle = "#fff";
      ctx.fillStyle = this.color + "22";
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.setLineDash([]);
    } else if (drag.type === "stroke") {
      polyline(ctx, drag.points);
      ctx.strokeStyle = this.color;
      ctx.lineWidth = 3 * px;
      ctx.stroke();
    } else if (drag.type === "lasso") {
      polyline(ctx, drag.points);
      ctx.closePath();
      ctx.fillStyle = this.color + (drag.cut ? "10" : "40");
      ctx.fill();
      ctx.setLineDash([5 * px, 4 * px]);
      ctx.strokeStyle = drag.cut ? "#ff5c6c" : "#fff";
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  drawCursor(ctx, scale, ox, oy) {
    if (!this.hover || this.readOnly || this.spaceHeld || !["brush", "eraser"].includes(this.tool)) return;
    ctx.beginPath();
    ctx.arc(ox + this.hover[0] * scale, oy + this.hover[1] * scale, this.brush * scale, 0, 2 * Math.PI);
    ctx.strokeStyle = this.tool === "eraser" ? "#ff5c6c" : "#fff";
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }
}

function polyline(ctx, points) {
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  if (points.length === 1) ctx.lineTo(points[0][0] + 0.01, points[0][1]);
}

function round(v) { return Math.round(v * 10) / 10; }

// A pointer position (continuous image coordinates) as a vertex: the pixel index it falls in.
function vertexOf([x, y]) { return [round(x - 0.5), round(y - 0.5)]; }

function closestOnSegment(p, a, b) {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const t = dx || dy ? Math.min(1, Math.max(0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy))) : 0;
  return [a[0] + t * dx, a[1] + t * dy];
}

function vertexHandle(ctx, x, y, px, fill) {
  ctx.beginPath();
  ctx.arc(x + 0.5, y + 0.5, 4 * px, 0, 2 * Math.PI);
  ctx.fillStyle = fill;
  ctx.fill();
  ctx.lineWidth = 1.5 * px;
  ctx.strokeStyle = "#000c";
  ctx.stroke();
}
