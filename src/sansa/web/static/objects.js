// The open image's objects (sansa/web/objects.py): a list with class, score and area. Hovering a row
// (or the object on the image) highlights it; a click selects it (Ctrl/Shift+click adds to the
// selection; on the image: Alt+click, or a plain click while reviewing). The eye hides an object on
// the page only (a view setting, like a class's eye: the export still writes it); Delete, Merge
// (two or more of one class), Split (then click the part to cut off), Accept and Reject (left out
// of the export, still listed) go to the server, each on the session revision (409: another tab).
// The masks over the image are painted here from the object ids (red + 256 * green of
// object_map_png), so hovering, selecting and hiding need no round trip.
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
const FILL = 120, STRONG = 200, EDGE = 255; // alpha of a fill, a highlighted fill, an outline
const OPTION_NAMES = ["min_area", "max_objects", "points_per_class", "overlap"];

function hexRgb(color) { return [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16)); }

async function decodeIds(url) {
  const blob = await (await fetch(url)).blob();
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = Object.assign(document.createElement("canvas"), { width: bitmap.width, height: bitmap.height });
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const ids = new Uint16Array(bitmap.width * bitmap.height);
  for (let i = 0; i < ids.length; i++) ids[i] = rgba[4 * i] + 256 * rgba[4 * i + 1];
  return { w: bitmap.width, h: bitmap.height, ids };
}

export class ObjectPanel {
  // hooks: side, sid(), editor, colorOf(label), toast(text, error), edited(name), fix(name, label) -> Promise,
  //        optionsSaved(state) (the session with the new object options)
  constructor(hooks) {
    this.hooks = hooks;
    this.side = hooks.side; // longest side of the object ids fetched
    this.name = null;
    this.objects = [];
    this.map = null; // {w, h, ids}
    this.skip = new Set(); // classes painted by the editor itself (its own masks) or hidden
    this.selected = new Set();
    this.hover = null;
    this.hidden = new Map(); // image -> Set of hidden object ids (this page only)
    this.splitting = false;
    this.canvas = document.createElement("canvas");
    $("object-delete").onclick = () => this.edit("delete");
    $("object-merge").onclick = () => this.edit("merge");
    $("object-split").onclick = () => this.startSplit();
    $("object-accept").onclick = () => this.edit("accept");
    $("object-reject").onclick = () => this.edit("reject");
    $("object-undo").onclick = () => this.edit("undo");
    $("object-fix").onclick = () => this.fix();
    $("object-reset").onclick = () => this.edit("reset");
    $("object-options").onsubmit = (e) => { e.preventDefault(); this.saveOptions(); };
    // render() rebuilds the rows under the pointer, and a removed row gets no mouseleave: the
    // list (never rebuilt) ends the hover when the pointer leaves it.
    $("objects").addEventListener("mouseleave", () => this.setHover(null));
    this.watchCanvas();
  }

  // -- what is shown ---------------------------------------------------------------------------
  // A target's answer (GET .../targets/{name}): its objects, drawn over the image by the editor.
  async show(name, out, skip) {
    const map = await decodeIds(out.object_map_png);
    if (this.name !== name) { this.selected.clear(); this.splitting = false; }
    this.name = name;
    this.objects = out.objects;
    this.map = map;
    this.skip = new Set(skip);
    this.edited = out.edited;
    const ids = new Set(this.objects.map((o) => o.id));
    for (const id of [...this.selected]) if (!ids.has(id)) this.selected.delete(id);
    this.render();
    this.paint();
  }

  clear() {
    this.name = null;
    this.objects = [];
    this.map = null;
    this.selected.clear();
    this.splitting = false;
    this.render();
  }

  hiddenIds() {
    if (!this.hidden.has(this.name)) this.hidden.set(this.name, new Set());
    return this.hidden.get(this.name);
  }

  render() {
    const hidden = this.name ? this.hiddenIds() : new Set();
    $("object-count").textContent = this.objects.filter((o) => o.state !== "rejected").length;
    $("objects").replaceChildren(...this.objects.map((o) => {
      const eye = Object.assign(document.createElement("button"), { className: "eye" + (hidden.has(o.id) ? " off" : ""),
        textContent: hidden.has(o.id) ? "◌" : "◉", title: `${hidden.has(o.id) ? "Show" : "Hide"} object ${o.id} (view only: it is still exported)` });
      eye.onclick = (e) => { e.stopPropagation(); this.toggleHidden(o.id); };
      const item = document.createElement("li");
      item.className = "object-item" + (this.selected.has(o.id) ? " selected" : "") + (o.state ? ` ${o.state}` : "")
        + (this.hover === o.id ? " hover" : "");
      item.style.setProperty("--c", this.hooks.colorOf(o.label));
      item.append(eye, Object.assign(document.createElement("span"), { className: "dot" }),
        Object.assign(document.createElement("span"), { className: "name", textContent: `${o.id} · ${o.label}` }),
        Object.assign(document.createElement("span"), { className: "score", textContent: `${Math.round(o.score * 100)}%`,
          title: `decoder IoU estimate ${o.score.toFixed(2)}` }),
        Object.assign(document.createElement("span"), { className: "area", textContent: `${o.area.toLocaleString("en")} px` }));
      if (o.state) item.append(Object.assign(document.createElement("span"), { className: "state", textContent: o.state }));
      Object.assign(item.dataset, { id: o.id, label: o.label, area: o.area, state: o.state || "" });
      item.onmouseenter = () => this.setHover(o.id);
      item.onmouseleave = () => this.setHover(null);
      item.onclick = (e) => this.select(o.id, e.ctrlKey || e.metaKey || e.shiftKey);
      return item;
    }));
    const chosen = this.chosen();
    const oneClass = chosen.length > 1 && chosen.every((o) => o.label === chosen[0].label);
    $("object-delete").disabled = !chosen.length;
    $("object-merge").disabled = !oneClass;
    $("object-split").disabled = chosen.length !== 1;
    $("object-split").classList.toggle("active", this.splitting);
    for (const id of ["object-accept", "object-reject", "object-fix"]) $(id).disabled = !chosen.length;
    $("object-undo").disabled = !chosen.some((o) => o.state);
    $("object-reset").disabled = !this.edited;
    $("objects-empty").classList.toggle("hidden", !!this.objects.length);
    $("objects-panel").dataset.image = this.name || "";
  }

  chosen() { return this.objects.filter((o) => this.selected.has(o.id)); }

  // Paint the objects in their classes' colours over the image: the hovered one stronger, the
  // selected ones outlined in white; hidden ones, rejected ones and skipped classes left unfilled.
  paint() {
    if (!this.map) return;
    const { w, h, ids } = this.map;
    const hidden = this.hiddenIds();
    const look = [null];
    for (const o of this.objects) {
      const filled = !hidden.has(o.id) && o.state !== "rejected" && !this.skip.has(o.label);
      const marked = this.selected.has(o.id) || this.hover === o.id;
      look.push(filled || marked ? { rgb: hexRgb(this.hooks.colorOf(o.label)), filled, selected: this.selected.has(o.id),
        alpha: this.hover === o.id ? STRONG : FILL } : null);
    }
    if (this.canvas.width !== w || this.canvas.height !== h) Object.assign(this.canvas, { width: w, height: h });
    const ctx = this.canvas.getContext("2d");
    const image = ctx.createImageData(w, h), px = image.data;
    for (let y = 0, i = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        const id = ids[i], l = id && look[id];
        if (!l) continue;
        const edge = (x > 0 && ids[i - 1] !== id) || (x < w - 1 && ids[i + 1] !== id)
          || (y > 0 && ids[i - w] !== id) || (y < h - 1 && ids[i + w] !== id);
        if (!edge && !l.filled) continue;
        const p = 4 * i, white = edge && l.selected;
        px[p] = white ? 255 : l.rgb[0];
        px[p + 1] = white ? 255 : l.rgb[1];
        px[p + 2] = white ? 255 : l.rgb[2];
        px[p + 3] = edge ? EDGE : l.alpha;
      }
    }
    ctx.putImageData(image, 0, 0);
    this.hooks.editor.setOverlay(this.canvas);
  }

  setHover(id) {
    if (this.hover === id) return;
    this.hover = id;
    for (const row of $("objects").children) row.classList.toggle("hover", Number(row.dataset.id) === id);
    this.paint();
  }

  select(id, add = false) {
    if (!add) {
      const only = this.selected.size === 1 && this.selected.has(id);
      this.selected.clear();
      if (!only) this.selected.add(id);
    } else if (this.selected.has(id)) this.selected.delete(id);
    else this.selected.add(id);
    this.splitting = false;
    this.render();
    this.paint();
  }

  toggleHidden(id) {
    const hidden = this.hiddenIds();
    if (hidden.has(id)) hidden.delete(id); else hidden.add(id);
    this.render();
    this.paint();
  }

  // -- on the image ----------------------------------------------------------------------------
  // The object id under a pointer event (0: none), from the ids at the overlay's size.
  idAt(e) {
    const editor = this.hooks.editor;
    if (!this.map || !editor.image || editor.image.name !== this.name) return 0;
    const [x, y] = editor.toImage(e);
    const mx = Math.min(this.map.w - 1, Math.floor((x * this.map.w) / editor.image.width));
    const my = Math.min(this.map.h - 1, Math.floor((y * this.map.h) / editor.image.height));
    return this.map.ids[my * this.map.w + mx];
  }

  // Alt+click (or a click while splitting) is the object panel's, before the editor's tools see it;
  // in review (the editor read-only) a plain click without dragging selects.
  watchCanvas() {
    const canvas = $("canvas");
    let downAt = null;
    canvas.parentElement.addEventListener("pointerdown", (e) => {
      if (e.target !== canvas || e.button !== 0 || !this.map) return;
      downAt = [e.clientX, e.clientY];
      if (!this.splitting && !e.altKey) return;
      e.stopPropagation();
      e.preventDefault();
      if (this.splitting) this.split(e); else this.pick(e);
    }, true);
    canvas.addEventListener("click", (e) => {
      const still = downAt && Math.hypot(e.clientX - downAt[0], e.clientY - downAt[1]) < 4;
      if (still && this.hooks.editor.readOnly && !e.altKey && !this.splitting) this.pick(e);
    });
    canvas.addEventListener("pointermove", (e) => { if (!e.buttons && this.map) this.setHover(this.idAt(e) || null); });
    canvas.addEventListener("pointerleave", () => this.setHover(null));
  }

  pick(e) {
    const id = this.idAt(e);
    if (id) this.select(id, e.ctrlKey || e.metaKey || e.shiftKey);
  }

  startSplit() {
    this.splitting = !this.splitting;
    if (this.splitting) this.hooks.toast("Split: click the part of the object to cut off");
    this.render();
  }

  async split(e) {
    this.splitting = false;
    const [x, y] = this.hooks.editor.toImage(e);
    await this.edit("split", [Math.round(x), Math.round(y)]);
  }

  // -- changes ---------------------------------------------------------------------------------
  async edit(op, point = null) {
    const name = this.name;
    const ids = [...this.selected].sort((a, b) => a - b);
    try {
      const out = await api.editObjects(this.hooks.sid(), name, { op, ids, ...(point ? { point } : {}) }, this.side);
      if (["delete", "merge", "split", "reset"].includes(op)) { this.hidden.delete(name); this.selected.clear(); }
      if (op === "split") this.selected.add(out.objects.length);
      if (this.name === name) await this.show(name, out, this.skip);
      this.hooks.edited(name);
    } catch (err) {
      this.hooks.toast(err.message, true);
      this.render();
    }
  }

  async fix() {
    const [first] = this.chosen();
    if (first) await this.hooks.fix(this.name, first.label);
  }

  // The object options the user set (empty fields: the library's defaults).
  setOptions(options) {
    for (const key of OPTION_NAMES) $(`option-${key}`).value = options?.[key] ?? "";
  }

  async saveOptions() {
    const options = {};
    for (const key of OPTION_NAMES) {
      const value = $(`option-${key}`).value.trim();
      if (value !== "") options[key] = Number(value);
    }
    try {
      const state = await api.objectOptions(this.hooks.sid(), options);
      this.hooks.toast("Object settings saved: propagate again to apply them");
      await this.hooks.optionsSaved(state);
    } catch (err) {
      this.hooks.toast(err.message, true);
    }
  }
}
