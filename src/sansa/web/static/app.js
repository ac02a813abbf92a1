// The page: classes, gallery, reference editor, live target overlays, review, propagation and export.
// The session lives on the server (saved in the folder's .sansa/web/): the page resumes it on load.
import { api, hooks as apiHooks } from "./api.js";
import { Editor } from "./editor.js";
import { ObjectPanel } from "./objects.js";
import { Review } from "./review.js";

const $ = (id) => document.getElementById(id);
const TARGET_SIDE = 320; // longer side of the overlays in the targets grid
const SYNC_DELAY_MS = 80; // debounce of prompt edits before they go to the server
const EDITOR_SIDE = 2048; // longest side of the predicted masks shown over the open image
const HEARTBEAT_MS = 3000; // how often the page checks the server is there

const S = {
  sid: null,
  images: [], // [{name, width, height}]
  classes: [], // [{name, color}]
  active: null, // class name
  refs: new Map(), // "image\nlabel" -> {id, image, label, source, score, area, prompt_type, img}
  reviews: {}, // target -> "accepted" | "rejected"
  fixes: {}, // target -> classes fixed on it (its other classes stay predicted or accepted)
  trash: [], // deleted classes: [{id, name, color, references, fixed}]
  current: null, // image open in the editor
  rev: 0, // bumped on every reference change (targets refresh when it moves)
  paint: 0, // bumped when colours change (overlays are redrawn, results stay current)
  propagatedRev: -1,
  propagating: false,
  exporting: false,
  offline: false, // the server does not answer (calls wait and retry)
  hidden: new Set(JSON.parse(localStorage.getItem("sansa.hidden") || "[]")), // classes not drawn (this browser)
};

const editor = new Editor($("canvas"), {
  onChange: (state, image, label, step) => scheduleSync(image, label, step),
  undoSaved: (image, label, state) => undoSaved(image, label, state),
  isFixed: (image, label) => (S.fixes[image] || []).includes(label),
  hasReference: (image, label) => S.refs.has(refKey(image, label)),
  fromPrediction: (image, label) => fromPrediction(image, label),
  masksFor: (image) => [...S.refs.values()].filter((r) => r.image === image && r.img && !S.hidden.has(r.label))
    .sort((a, b) => (a.label === S.active) - (b.label === S.active)),
  sizeOf: (name) => S.images.find((i) => i.name === name),
  notify: (text) => toast(text),
});

const objects = new ObjectPanel({
  side: EDITOR_SIDE,
  sid: () => S.sid,
  editor,
  colorOf: (label) => colorOf(label),
  toast: (text, error) => toast(text, error),
  edited: (name) => objectsEdited(name),
  fix: async (name, label) => { selectClass(label); if (await promote(name) && review.active) await review.refresh(); },
  optionsSaved: (state) => applyState(state),
});

const review = new Review({
  sid: () => S.sid,
  rev: () => `${S.rev}.${S.paint}`,
  editor,
  open: (name) => openImage(name),
  hidden: (name) => markedLabels(name),
  promote: (name) => promote(name),
  prepare: async () => !!S.refs.size && (S.propagatedRev === S.rev || (await propagate())),
  changed: (items) => {
    S.reviews = Object.fromEntries(items.filter((i) => ["accepted", "rejected"].includes(i.state))
      .map((i) => [i.name, i.state]));
    renderTargets();
    renderStatus();
  },
  toast: (text, error) => toast(text, error),
});

// -- helpers ------------------------------------------------------------------------------------
function toast(text, error = false, action = null) {
  const node = el("div", { className: "toast" + (error ? " error" : ""), textContent: text });
  if (action) {
    const button = el("button", { className: "btn small", textContent: action.label });
    button.onclick = () => { node.remove(); action.run(); };
    node.append(" ", button);
  }
  $("toasts").append(node);
  setTimeout(() => node.remove(), action ? 10000 : error ? 6000 : 3000);
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${src.slice(0, 80)}`));
    img.src = src;
  });
}

const colorOf = (label) => S.classes.find((c) => c.name === label)?.color || "#fff";
const refKey = (image, label) => `${image}\n${label}`;
const referenceImages = () => new Set([...S.refs.values()].map((r) => r.image));
const isFixed = (name) => !!S.fixes[name]?.length;
// the grid's targets: neither references nor fixed (those open in the editor)
const targetNames = () => {
  const refs = referenceImages();
  return S.images.map((i) => i.name).filter((n) => !refs.has(n) && !isFixed(n));
};
// a reference example: marked as a reference, not a fixed target
const isReference = (name) => [...S.refs.values()].some((r) => r.image === name && r.source !== "corrected");
// classes drawn from the page's own masks on `name` (the predicted overlay leaves them out)
const markedLabels = (name) => [...new Set([...S.refs.values()].filter((r) => r.image === name).map((r) => r.label)
  .concat(S.fixes[name] || []))];
const overlayRev = () => `${S.rev}.${S.paint}.${[...S.hidden].join(",")}`;
const hiddenLabels = () => [...S.hidden].filter((h) => S.classes.some((c) => c.name === h));

// -- session ------------------------------------------------------------------------------------
// Take the server's session (on load, after a restart, or a new session) as the page's state.
async function applyState(state) {
  S.sid = state.session_id;
  api.setRevision(state.revision);
  S.classes = state.classes;
  S.reviews = state.reviews;
  S.fixes = state.fixes || {};
  S.trash = state.trash || [];
  objects.setOptions(state.object_options);
  S.refs.clear();
  editor.reset();
  for (const r of state.references) {
    const img = await loadImage(r.mask_png);
    S.refs.set(refKey(r.image, r.label), { ...r, img });
    const prompt = editor.state(r.image, r.label);
    if (r.prompt) prompt.loadPrompt(r.prompt); else prompt.loadMask(img);
  }
  S.rev += 1;
  S.propagatedRev = state.targets && state.propagated === state.targets ? S.rev : -1;
  if (!S.classes.some((c) => c.name === S.active)) S.active = S.classes[0]?.name || null;
  for (const note of state.notes) toast(note, true);
  selectClass(S.active);
  referencesChanged(false);
  if (S.current) refreshEditorOverlay();
}

// Another tab changed the session: show the server's state (the refused change is dropped).
async function reloadState() {
  for (const entry of syncs.values()) { clearTimeout(entry.timer); entry.dirty = entry.failed = false; }
  renderSaved();
  await applyState(await api.session(S.sid));
  if (review.active) await review.refresh();
}

async function newSession() {
  if (S.refs.size && !confirm("Start a new session? The current one stays saved in the folder's .sansa/web/.")) return;
  if (review.active) review.exit();
  await applyState(await api.newSession());
  await addClass("object");
  S.current = null;
  editor.close();
  $("empty").classList.remove("hidden");
  renderStatus();
  toast("New session");
}

// After a rename or recolour: masks come back in the new colours; results stay current.
async function refreshState() {
  S.paint += 1;
  await applyState(await api.session(S.sid));
}

// -- classes ------------------------------------------------------------------------------------
async function addClass(name) {
  const info = await api.addClass(S.sid, name);
  S.classes.push(info);
  selectClass(info.name);
}

// Delete a class: asks first when it has references or fixes; undoable (the server keeps it in
// the session's trash, so "Restore" works after a reload or a restart too).
async function removeClass(name) {
  const refs = [...S.refs.values()].filter((r) => r.label === name);
  const fixed = refs.filter((r) => r.source === "corrected").length;
  const what = `${refs.length} reference${refs.length === 1 ? "" : "s"}` + (fixed ? ` (${fixed} fixed)` : "");
  if (refs.length && !confirm(`Delete class “${name}” and its ${what}? You can restore it afterwards.`)) return;
  const state = await api.removeClass(S.sid, name);
  S.trash = state.trash;
  S.classes = state.classes;
  S.fixes = state.fixes;
  for (const [key, ref] of S.refs) if (ref.label === name) { S.refs.delete(key); editor.forget(ref.image, name); }
  if (S.active === name) S.active = S.classes[0]?.name || null;
  referencesChanged();
  selectClass(S.active);
  const deleted = S.trash[S.trash.length - 1];
  if (deleted) toast(`Deleted class “${name}”`, false, { label: "Undo", run: () => restoreClass(deleted.id) });
}

async function restoreClass(id) {
  try {
    await applyState(await api.restoreClass(S.sid, id));
    toast("Class restored");
  } catch (err) {
    toast(err.message, true);
  }
}

function renderTrash() {
  $("trash").replaceChildren(...S.trash.slice(-5).reverse().map((t) => {
    const restore = el("button", { className: "btn small", textContent: "Restore", title: `Bring back ${t.name}` });
    restore.onclick = () => restoreClass(t.id);
    const item = el("li", { className: "trash-item" },
      el("span", { className: "name", textContent: `${t.name} · ${t.references} ref${t.references === 1 ? "" : "s"}` }), restore);
    item.dataset.name = t.name;
    return item;
  }));
  $("trash-panel").classList.toggle("hidden", !S.trash.length);
}

async function updateClass(name, changes) {
  try {
    const info = await api.updateClass(S.sid, name, changes);
    if (info.name !== name) {
      editor.renameLabel(name, info.name);
      if (S.active === name) S.active = info.name;
    }
    await refreshState();
  } catch (err) {
    toast(err.message, true);
    renderClasses();
  }
}

// Show or hide a class's masks everywhere on the page (the export is not affected).
function toggleClass(name) {
  if (S.hidden.has(name)) S.hidden.delete(name); else S.hidden.add(name);
  localStorage.setItem("sansa.hidden", JSON.stringify([...S.hidden]));
  renderClasses();
  renderTargets();
  editor.redraw();
  if (S.current) refreshEditorOverlay();
}

function selectClass(name) {
  S.active = name;
  editor.setClass(name, colorOf(name));
  loadPolygons();
  renderClasses();
  renderStatus();
}

function renameInPlace(item, c) {
  const input = el("input", { className: "rename", value: c.name, maxLength: 64 });
  let finished = false; // Enter or Escape, then the blur that removing the input causes
  const done = (save) => {
    if (finished) return;
    finished = true;
    const name = input.value.trim();
    input.replaceWith(el("span", { className: "name", textContent: c.name }));
    if (save && name && name !== c.name) updateClass(c.name, { name });
  };
  input.onkeydown = (e) => {
    e.stopPropagation();
    if (e.key === "Enter") done(true);
    else if (e.key === "Escape") done(false);
  };
  input.onblur = () => done(true);
  input.onclick = (e) => e.stopPropagation();
  item.querySelector(".name").replaceWith(input);
  input.focus();
  input.select();
}

function renderClasses() {
  renderTrash();
  const counts = {};
  for (const r of S.refs.values()) counts[r.label] = (counts[r.label] || 0) + 1;
  $("classes").replaceChildren(...S.classes.map((c, i) => {
    const del = el("button", { className: "del", title: `Delete class ${c.name}`, textContent: "✕" });
    del.onclick = (e) => { e.stopPropagation(); removeClass(c.name).catch((err) => toast(err.message, true)); };
    const swatch = el("label", { className: "swatch", title: `Colour of ${c.name} (click to change)` },
      el("input", { type: "color", value: c.color }));
    swatch.onclick = (e) => e.stopPropagation();
    swatch.querySelector("input").onchange = (e) => updateClass(c.name, { color: e.target.value });
    const name = el("span", { className: "name", textContent: c.name, title: "Double-click to rename" });
    const eye = el("button", { className: "eye" + (S.hidden.has(c.name) ? " off" : ""), textContent: S.hidden.has(c.name) ? "◌" : "◉",
      title: `${S.hidden.has(c.name) ? "Show" : "Hide"} ${c.name} on the images` });
    eye.onclick = (e) => { e.stopPropagation(); toggleClass(c.name); };
    const item = el("li", { className: "class-item" + (c.name === S.active ? " active" : "") },
      swatch, eye, name,
      el("span", { className: "refs", textContent: `${counts[c.name] || 0} ref${counts[c.name] === 1 ? "" : "s"}` }),
      ...(i < 9 ? [el("kbd", { textContent: String(i + 1) })] : []), del);
    item.style.setProperty("--c", c.color);
    item.onclick = () => { if (S.active !== c.name) selectClass(c.name); };
    item.dataset.name = c.name;
    item.dataset.color = c.color;
    return item;
  }));
}

// -- gallery and editor -------------------------------------------------------------------------
function renderGallery() {
  $("image-count").textContent = S.images.length;
  $("gallery").replaceChildren(...S.images.map((info) => {
    const labels = [...S.refs.values()].filter((r) => r.image === info.name).map((r) => r.label);
    const badges = el("div", { className: "badges" }, ...labels.map((l) => {
      const dot = el("span", { title: l });
      dot.style.setProperty("--c", colorOf(l));
      return dot;
    }));
    const thumb = el("div", { className: "thumb" + (info.name === S.current ? " open" : ""), title: info.name },
      el("img", { src: api.thumbUrl(info.name, 160), alt: info.name, loading: "lazy" }), badges);
    if (isFixed(info.name) && !isReference(info.name)) thumb.append(el("span", { className: "tag", textContent: "FIXED" }));
    else if (labels.length) thumb.append(el("span", { className: "tag", textContent: "REF" }));
    thumb.dataset.name = info.name;
    thumb.onclick = () => openImage(info.name);
    return thumb;
  }));
}

async function openImage(name) {
  S.current = name;
  renderGallery();
  editor.setOverlay(null);
  objects.clear();
  let img;
  try {
    img = await loadImage(api.imageUrl(name));
  } catch (err) {
    if (S.current === name) await imageGone(name);
    return;
  }
  if (S.current !== name) return;
  $("empty").classList.add("hidden");
  editor.open(name, img);
  loadPolygons();
  renderStatus();
  showFeatures();
  refreshEditorOverlay(); // in the background: the image can be worked on meanwhile
}

// The features layer (sansa/web/features.py): the open image coloured by its features' first three
// principal components, fitted on the references; fetched again when the image or references change.
const FEATURES_SIDE = 1024;
async function showFeatures() {
  const name = S.current;
  if (!$("features-layer").checked || !name) { editor.setLayer(null); return; }
  try {
    const img = await loadImage(api.featuresUrl(S.sid, name, FEATURES_SIDE, S.rev));
    if (S.current === name && $("features-layer").checked) editor.setLayer(img);
  } catch (err) {
    toast(`${name}: the features layer could not be made`, true);
  }
}

// The open image could not be read (deleted or replaced on disk): say so, close it, and show the
// folder as it is now.
async function imageGone(name) {
  S.images = (await api.images()).images;
  const still = S.images.some((i) => i.name === name);
  toast(still ? `${name}: could not be read` : `${name}: no longer in the folder`, true);
  S.current = null;
  editor.close();
  $("empty").classList.remove("hidden");
  renderGallery();
  renderTargets();
  renderStatus();
}

// The predicted (or accepted) masks of the open target over it, as the export writes them; the
// classes marked by hand on it are drawn by the editor instead.
// Its objects are listed and painted by the object panel (static/objects.js).
async function refreshEditorOverlay() {
  const name = S.current;
  if (!name || !S.refs.size || isReference(name)) { editor.setOverlay(null); objects.clear(); return; }
  const rev = overlayRev();
  try {
    const skip = [...markedLabels(name), ...hiddenLabels()];
    const out = await api.target(S.sid, name, EDITOR_SIDE, rev, skip);
    if (S.current === name && rev === overlayRev()) await objects.show(name, out, skip);
  } catch (err) {
    if (err.status !== 409 && S.current === name) toast(`${name}: ${err.message}`, true);
  }
}

// An image's objects were edited: its card and the review counts follow.
function objectsEdited(name) {
  const card = cards.get(name);
  if (card) { card.dataset.rev = "-1"; pumpOverlays(); }
  if (review.active) review.refresh().catch((err) => toast(err.message, true));
}

function step(delta) {
  if (!S.images.length) return;
  const i = S.images.findIndex((x) => x.name === S.current);
  const next = S.images[(i + delta + S.images.length) % S.images.length];
  openImage(next.name);
}

function renderStatus() {
  const info = S.images.find((i) => i.name === S.current);
  $("status-image").innerHTML = info ? `<b>${escapeHtml(info.name)}</b> · ${info.width}×${info.height}` : "No image open";
  const ref = S.refs.get(refKey(S.current, S.active));
  if (info && review.active && editor.readOnly) {
    $("status-ref").textContent = "reviewing the predicted masks";
    $("status-hint").textContent = "A accept · R reject · F fix · ← → step · wheel zooms, drag pans";
    $("banner").classList.add("hidden");
    return;
  }
  $("status-ref").textContent = !info ? "" : ref
    ? `${S.active}: ${ref.prompt_type} prompt · ${ref.area.toLocaleString()} px` +
      (ref.score == null ? "" : ` · score ${ref.score.toFixed(2)}`)
    : S.active ? `not a reference for “${S.active}” yet` : "add a class first";
  $("status-hint").textContent = info ? editor.hint : "";
  const banner = $("banner");
  const show = info && S.active && !ref && !review.active;
  banner.classList.toggle("hidden", !show);
  if (show) {
    $("banner-text").textContent = `Draw to make this a reference for “${S.active}”`;
    $("promote-open").classList.toggle("hidden", !S.refs.size);
  }
  for (const b of document.querySelectorAll(".tool[data-tool]")) b.classList.toggle("active", b.dataset.tool === editor.tool);
  $("brush-size").textContent = ["brush", "eraser"].includes(editor.tool) && editor.brush ? `${editor.brush * 2} px` : "";
}

function escapeHtml(text) { return text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`); }

function setTool(tool) {
  editor.setTool(tool);
  loadPolygons();
  renderStatus();
}

// The active class's mask on the open image as polygons (sansa/web/polygons.py), when the polygon
// tool or the Polygons toggle wants them and the page has none in step with the server's mask.
async function loadPolygons() {
  const image = S.current, label = S.active, key = refKey(image, label);
  const ref = S.refs.get(key), state = editor.wantsPolygons() && editor.state(image, label);
  if (!state || state.polygons || !ref || syncs.get(key)?.dirty || syncs.get(key)?.busy) return;
  try {
    const out = await api.polygons(S.sid, ref.id);
    if (S.refs.get(key) === ref && !state.polygons && !syncs.get(key)?.dirty) {
      state.polygons = out.rings;
      editor.redraw();
    }
  } catch (err) {
    toast(err.message, true);
  }
}

// -- sync prompts to the server -----------------------------------------------------------------
const syncs = new Map(); // key -> {timer, busy, again, dirty}

function unsaved() { return [...syncs.values()].some((e) => e.dirty || e.busy); }

function renderSaved() {
  const chip = $("save-state");
  const failed = [...syncs.values()].some((e) => e.failed) || (S.offline && unsaved());
  chip.textContent = failed ? "Not saved" : unsaved() ? "Saving…" : "Saved";
  chip.classList.toggle("pending", unsaved());
}

// `step`: +1 an edit (a new undo step on the server too), -1 an undo (the server drops its step:
// its undo history stays the page's, so undo goes on from there after a reload)
function scheduleSync(image, label, step = 1) {
  const key = refKey(image, label);
  const entry = syncs.get(key) || { timer: 0, busy: false, again: false, dirty: false, failed: false, steps: 0 };
  syncs.set(key, entry);
  entry.dirty = true;
  entry.steps += step;
  renderSaved();
  clearTimeout(entry.timer);
  entry.timer = setTimeout(() => flush(image, label), SYNC_DELAY_MS);
}

async function flush(image, label) {
  const key = refKey(image, label);
  const entry = syncs.get(key);
  if (entry.busy) { entry.again = true; return; }
  entry.busy = true;
  entry.dirty = false;
  const undos = Math.max(0, -entry.steps);
  entry.steps = 0;
  try {
    const state = editor.state(image, label);
    const prompt = state.toPrompt();
    const sent = prompt?.edits?.length || 0; // edits sent now (more may come while this one is out)
    const old = S.refs.get(key);
    if (!prompt) {
      // a fixed class erased to nothing stays fixed (empty); "Clear" makes it a plain target again
      const keepFix = old?.source === "corrected" && !editor.state(image, label).cleared;
      if (old) S.fixes = (await api.removeReference(S.sid, old.id, keepFix, undos)).fixes;
      S.refs.delete(key);
      if (state.kind === "mask" && !entry.again) state.ops = []; // the server holds no mask now
    } else {
      const out = await api.putReference(S.sid, image, label, prompt, undos);
      const img = await loadImage(out.mask_png);
      if (sent && state.ops) state.ops.splice(0, sent);
      else if (prompt.mask_png && state.ops === null && !entry.again) state.ops = []; // in step with the server
      else if (prompt.polygons && state.polygons === prompt.polygons) state.loadMask(img, prompt.polygons); // the server's pixels
      S.refs.set(key, { ...out, img });
    }
    entry.failed = false;
    referencesChanged();
  } catch (err) {
    // not saved: the next edit tries again, leaving the page warns (a stale change is dropped)
    entry.dirty = entry.failed = !err.stale;
    toast(err.message, true);
  } finally {
    entry.busy = false;
    if (entry.again) { entry.again = false; flush(image, label); }
    renderSaved();
  }
}

// Undo of a saved change: the server puts the reference back as it was before its last change
// (its undo steps are saved: this works after a reload or a restart too). Returns false when an
// edit is still on its way (the page undoes it); with no step left on the server, the page's own.
function undoSaved(image, label, state) {
  const key = refKey(image, label);
  if (syncs.get(key)?.dirty || syncs.get(key)?.busy) return false;
  (async () => {
    try {
      const session = await api.undoReference(S.sid, image, label);
      S.fixes = session.fixes || {};
      const ref = session.references.find((r) => r.image === image && r.label === label);
      const img = ref && (await loadImage(ref.mask_png));
      if (ref) S.refs.set(key, { ...ref, img }); else S.refs.delete(key);
      editor.undone(state, ref, img);
      referencesChanged();
    } catch (err) {
      if (err.status !== 409 || err.stale) toast(err.message, true);
      else if (state.undo()) editor.changed(state, -1); // nothing saved to undo: the page's own history
      else toast(err.message);
    }
  })();
  return true;
}

// Make target `name` a reference of the active class from its prediction, to correct it.
// The polygon tool on a target without a mask of the class yet: its prediction becomes the mask to
// edit (as "Start from prediction" does). False when there is none to start from.
const noPrediction = new Set(); // image\nlabel where nothing of the class is predicted
function fromPrediction(image, label) {
  const key = refKey(image, label);
  if (!S.refs.size || isReference(image) || S.refs.has(key) || noPrediction.has(key)) return false;
  if (!S.promoting) {
    S.promoting = true;
    promote(image, "polygon").then((done) => { if (!done) noPrediction.add(key); })
      .finally(() => { S.promoting = false; });
  }
  return true;
}

async function promote(name, tool = "brush") {
  if (!S.active) { toast("Add a class first", true); return false; }
  try {
    const out = await api.promote(S.sid, name, S.active);
    const img = await loadImage(out.mask_png);
    S.refs.set(refKey(name, S.active), { ...out, img });
    S.fixes[name] = [...new Set([...(S.fixes[name] || []), S.active])];
    const state = editor.state(name, S.active);
    state.push();
    state.loadMask(img);
    referencesChanged();
    await openImage(name);
    setTool(tool);
    toast(`“${name}” is now a corrected reference: fix its mask with the ${tool === "polygon" ? "polygon tool" : "brush and eraser"} (it stays in the export)`);
    return true;
  } catch (err) {
    toast(err.message, true);
    return false;
  }
}

function referencesChanged(bump = true) {
  if (bump) S.rev += 1;
  renderClasses();
  renderGallery();
  renderTargets();
  renderStatus();
  renderProgress();
  editor.redraw();
  if ($("features-layer").checked) showFeatures(); // its components are fitted on the references
  if (bump && S.current) refreshEditorOverlay();
  loadPolygons();
  if (bump && review.active) review.refresh().catch((err) => toast(err.message, true)); // its counts follow
}

// -- targets ------------------------------------------------------------------------------------
const cards = new Map(); // name -> card element
const visible = new Set();
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const name = e.target.dataset.name;
    if (e.isIntersecting) visible.add(name); else visible.delete(name);
  }
  pumpOverlays();
}, { root: $("targets"), rootMargin: "200px" });

function renderTargets() {
  const names = targetNames();
  $("target-count").textContent = names.length;
  const grid = $("targets");
  if (names.join("\n") !== [...cards.keys()].join("\n")) {
    observer.disconnect();
    visible.clear();
    for (const name of names) if (!cards.has(name)) cards.set(name, makeCard(name));
    for (const name of [...cards.keys()]) if (!names.includes(name)) cards.delete(name);
    grid.replaceChildren(...names.map((n) => cards.get(n)));
    for (const card of cards.values()) observer.observe(card);
  }
  for (const [name, card] of cards) card.dataset.review = S.reviews[name] || "";
  if (!S.refs.size) {
    for (const card of cards.values()) clearCard(card);
    grid.querySelector(".placeholder")?.remove();
    grid.prepend(el("div", { className: "placeholder",
      innerHTML: "Open an image and mark an object<br>(box, clicks, scribble or mask):<br>every other image is segmented here." }));
  } else {
    grid.querySelector(".placeholder")?.remove();
    for (const card of cards.values()) card.classList.toggle("stale", card.dataset.rev !== overlayRev());
  }
  $("review-open").disabled = !S.refs.size;
  pumpOverlays();
}

function makeCard(name) {
  const overlay = el("img", { className: "overlay", alt: "" });
  const promoteButton = el("button", { className: "btn promote", textContent: "Fix",
    title: "Correct this prediction: it becomes a reference mask to edit (and stays in the export)" });
  promoteButton.onclick = (e) => { e.stopPropagation(); promote(name); };
  const card = el("div", { className: "card" },
    el("div", { className: "pic" }, el("img", { src: api.thumbUrl(name, TARGET_SIDE), alt: name, loading: "lazy" }),
      overlay, promoteButton, el("span", { className: "verdict" })),
    el("div", { className: "meta" }, el("div", { className: "name", textContent: name }),
      el("div", { className: "scores" })));
  card.dataset.name = name;
  card.dataset.rev = "-1";
  card.onclick = () => openImage(name);
  return card;
}

function clearCard(card) {
  card.querySelector(".overlay").removeAttribute("src");
  card.querySelector(".scores").replaceChildren();
  card.dataset.rev = "-1";
  card.classList.remove("stale");
}

let pumping = false;

// Fetch overlays of visible cards that are behind the current references, one at a time
// (the server runs the model under one lock anyway).
async function pumpOverlays() {
  if (pumping || !S.refs.size) return;
  pumping = true;
  try {
    for (;;) {
      const name = [...cards.keys()].find((n) => visible.has(n) && cards.get(n).dataset.rev !== overlayRev());
      if (!name || !S.refs.size) break;
      const card = cards.get(name), rev = overlayRev();
      try {
        const out = await api.target(S.sid, name, TARGET_SIDE, rev, hiddenLabels());
        showTarget(card, out, rev);
      } catch (err) {
        card.dataset.rev = rev;
        if (err.status !== 409) toast(`${name}: ${err.message}`, true);
      }
    }
  } finally {
    pumping = false;
  }
}

function showTarget(card, out, rev) {
  card.querySelector(".overlay").src = out.overlay_png;
  card.querySelector(".scores").replaceChildren(...out.classes.filter((c) => c.area > 0).map((c) => {
    const chip = el("span", { className: "score", textContent: `${c.label} ${Math.round(c.score * 100)}%`,
      title: `${c.area.toLocaleString()} px, decoder IoU estimate ${c.score.toFixed(2)}` });
    chip.style.setProperty("--c", colorOf(c.label));
    return chip;
  }));
  card.dataset.rev = rev;
  card.dataset.source = out.source;
  card.dataset.outdated = out.stale ? "1" : "";
  card.querySelector(".verdict").title = out.stale
    ? "Accepted with older references: the export writes it as accepted; review it again to take the new prediction" : "";
  card.classList.toggle("stale", rev !== overlayRev());
}

// -- propagate and export -----------------------------------------------------------------------
// "~12 s left" from the rate so far (a job's first items, e.g. encodings being cached, can skew it)
function remaining(clock, done, total) {
  if (!clock.start || done === clock.first) { clock.start = performance.now(); clock.first = done; return ""; }
  const rate = (done - clock.first) / ((performance.now() - clock.start) / 1000);
  if (!(rate > 0) || done >= total) return "";
  const s = Math.ceil((total - done) / rate);
  return ` · ~${s < 90 ? `${s} s` : `${Math.round(s / 60)} min`} left`;
}
const propagationClock = {}, exportClock = {};

function renderProgress(status) {
  const bar = $("progress-bar"), text = $("progress-text");
  $("propagate-stop").classList.toggle("hidden", !S.propagating);
  if (status) {
    const fraction = status.total ? status.done / status.total : 1;
    bar.style.width = `${Math.round(fraction * 100)}%`;
    text.textContent = status.state === "running"
      ? `${status.done} / ${status.total} images${remaining(propagationClock, status.done, status.total)}`
      : status.state === "done" ? `${status.total} images ✓` : status.state === "failed" ? "failed" : "stopped";
  } else if (S.stopped && S.stopped.rev === S.rev && !S.propagating) {
    text.textContent = S.stopped.text; // kept until the next run or change
  } else if (S.propagatedRev === S.rev && !S.propagating) {
    bar.style.width = "100%";
    text.textContent = `${targetNames().length} images ✓`;
  } else if (!S.propagating) {
    bar.style.width = "0%";
    text.textContent = S.propagatedRev < 0 ? "not propagated" : "out of date";
  }
  $("propagate").disabled = S.propagating || !S.refs.size;
  $("export").disabled = S.exporting;
  if (!S.exporting) {
    $("export-note").textContent = S.propagatedRev === S.rev ? "Ready to export." : "Some targets are not propagated: export offers to propagate first.";
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function propagate() {
  if (!S.refs.size) { toast("Mark a reference first", true); return false; }
  if (S.propagating) return false;
  S.propagating = true;
  S.stopped = null;
  const rev = S.rev;
  for (const k of Object.keys(propagationClock)) delete propagationClock[k];
  $("model-chip").classList.add("busy");
  try {
    let status = await api.propagate(S.sid);
    renderProgress(status);
    while (status.state === "running") {
      await sleep(250);
      status = await api.progress(S.sid);
      renderProgress(status);
    }
    if (status.state === "failed") throw new Error(status.error || "propagation failed");
    if (status.state === "cancelled") {
      S.stopped = { rev, text: `stopped · ${status.done} / ${status.total} images` };
      toast(`Stopped: ${status.done} of ${status.total} images propagated (the rest when you propagate again)`);
    }
    for (const failed of status.failed || []) toast(`${failed.name}: ${failed.reason}`, true);
    if (status.state === "done" && rev === S.rev) {
      S.propagatedRev = rev;
      toast(`Propagated to ${status.total} images`);
    }
    return status.state === "done" && rev === S.rev;
  } catch (err) {
    toast(err.message, true);
    return false;
  } finally {
    S.propagating = false;
    $("model-chip").classList.remove("busy");
    renderProgress();
  }
}

function renderExport(status) {
  const fraction = status.total ? status.done / status.total : 0;
  $("export-bar").style.width = `${Math.round(fraction * 100)}%`;
  $("export-progress").classList.toggle("hidden", status.state !== "running");
  $("export-cancel").classList.toggle("hidden", status.state !== "running");
  $("export-note").textContent = status.state === "running"
    ? `Exporting… ${status.done} / ${status.total}${remaining(exportClock, status.done, status.total)}`
    : status.state === "done" ? `Exported ${status.images} images ✓` : `Export ${status.state}`;
}

const FORMAT_NAMES = { coco: "COCO", png: "PNG masks", yolo: "YOLO", indexed: "Indexed PNG", overlay: "Overlays",
  labelstudio: "Label Studio", instances: "Object ids" };
const FORMATS_CHECKED = ["coco", "png", "yolo"];

// The formats the server can write, as checkboxes (the usual three checked).
function renderFormats(formats) {
  $("formats").replaceChildren(...formats.map((f) => el("label", {},
    el("input", { type: "checkbox", value: f, checked: FORMATS_CHECKED.includes(f) }), FORMAT_NAMES[f] || f)));
}

// Only what the user set: the library owns the defaults.
function exportOptions() {
  const options = {};
  for (const input of document.querySelectorAll("#export-options input:checked")) {
    options[input.dataset.option] = input.dataset.on || true;
  }
  return options;
}

async function exportZip() {
  const formats = [...document.querySelectorAll("#formats input:checked")].map((i) => i.value);
  if (!formats.length) return toast("Choose at least one export format", true);
  if (S.exporting) return;
  if (S.propagatedRev !== S.rev) { // never silently: say what is stale, offer to propagate first
    const state = await api.session(S.sid);
    const stale = state.targets - state.propagated;
    if (stale > 0) {
      const what = `${stale} of ${state.targets} targets are not segmented with the current references`;
      $("export-note").textContent = `${what}.`;
      if (!confirm(`${what}. Propagate them first, then export?`)) return;
      if (!(await propagate())) return;
    } else {
      S.propagatedRev = S.rev;
    }
  }
  S.exporting = true;
  renderProgress();
  for (const k of Object.keys(exportClock)) delete exportClock[k];
  try {
    let status = await api.startExport(S.sid, formats, exportOptions());
    S.exportId = status.id;
    renderExport(status);
    while (status.state === "running") {
      await sleep(200);
      status = await api.exportStatus(S.sid, status.id);
      renderExport(status);
    }
    if (status.state === "cancelled") { $("export-note").textContent = "Export cancelled."; return; }
    if (status.state !== "done") throw new Error(status.error || "export failed");
    api.download(status.download, "sansa-export.zip");
    const left = status.left_out.length ? ` (${status.left_out.length} left out: rejected or unreadable)` : "";
    toast(`Exported ${status.images} images${left}: ${formats.join(", ")}`);
  } catch (err) {
    toast(err.message, true);
    $("export-note").textContent = "Export failed.";
  } finally {
    S.exporting = false;
    $("export-progress").classList.add("hidden");
    $("export-cancel").classList.add("hidden");
    $("export").disabled = false;
  }
}

async function upload(files) {
  for (const file of files) {
    try {
      await api.upload(file);
      toast(`Added ${file.name}`);
    } catch (err) {
      toast(err.message, true);
    }
  }
  S.images = (await api.images()).images;
  renderGallery();
  renderTargets();
}

// -- keyboard -----------------------------------------------------------------------------------
const TOOL_KEYS = { p: "point", b: "box", s: "scribble", m: "brush", l: "lasso", e: "eraser", g: "polygon" };

function onReviewKey(e, k) {
  if (e.key === "Escape") review.exit();
  else if (k === "a") review.decide("accepted");
  else if (k === "r") review.decide("rejected");
  else if (k === "f") review.fix();
  else if (k === "u") review.decide(null);
  else if (k === "o") review.toggleOrder();
  else if (k === "t") review.nextFilter();
  else if (e.key === "ArrowRight") review.step(1);
  else if (e.key === "ArrowLeft") review.step(-1);
  else return false;
  return true;
}

// Brush size in image pixels (the same on every zoom): [ and ] by a quarter.
function resizeBrush(factor) {
  if (!editor.brush) return;
  const next = Math.round(editor.brush * factor);
  editor.brush = Math.min(2000, Math.max(1, next === editor.brush ? editor.brush + Math.sign(factor - 1) : next));
  renderStatus();
  editor.redraw();
}

function onKey(e) {
  const help = $("help");
  if (e.key === "Escape" && !help.classList.contains("hidden")) { help.classList.add("hidden"); return; }
  if (e.target.closest("input, select")) return;
  const k = e.key.toLowerCase();
  const ctrl = e.ctrlKey || e.metaKey;
  if (review.active && !ctrl && !e.altKey && onReviewKey(e, k)) { e.preventDefault(); return; }
  if (e.key === "Escape") { if (!editor.cancelDraft()) document.activeElement?.blur(); return; }
  if (editor.draft && e.key === "Enter" && !e.shiftKey) { editor.closeDraft(); e.preventDefault(); return; }
  if (editor.draft && e.key === "Backspace") { editor.undoVertex(); e.preventDefault(); return; }
  if (e.key === "?" || k === "h") help.classList.toggle("hidden");
  else if ((k === "z" && e.shiftKey && ctrl) || (k === "y" && ctrl)) editor.edit("redo");
  else if (k === "z" && !e.shiftKey) editor.edit("undo");
  else if (e.key === "Delete" || e.key === "Backspace") editor.edit("clear");
  else if (e.key === "Enter" && e.shiftKey) propagate();
  else if (k === "e" && e.shiftKey) exportZip();
  else if (ctrl || e.altKey) return;
  else if (TOOL_KEYS[k]) setTool(TOOL_KEYS[k]);
  else if (/^[1-9]$/.test(e.key) && S.classes[+e.key - 1]) selectClass(S.classes[+e.key - 1].name);
  else if (e.key === "0") editor.fit();
  else if (k === "n") { $("class-name").focus(); }
  else if (k === "v" && S.refs.size) review.enter();
  else if (e.key === "ArrowRight") step(1);
  else if (e.key === "ArrowLeft") step(-1);
  else if (e.key === "[") resizeBrush(1 / 1.25);
  else if (e.key === "]") resizeBrush(1.25);
  else return;
  e.preventDefault();
}

// -- start --------------------------------------------------------------------------------------
// The server went away (stopped, restarting): a banner while calls wait; the heartbeat notices
// it even while the page is idle, and the banner goes by itself once the server answers.
function watchServer() {
  apiHooks.offline = (down) => {
    S.offline = down;
    $("offline").classList.toggle("hidden", !down);
    renderSaved(); // edits waiting for the server are not saved yet
  };
  apiHooks.stale = () => reloadState();
  let beating = false;
  setInterval(async () => {
    if (beating || document.hidden) return;
    beating = true;
    try { await api.info(); } catch (_) { /* answered: the server is there */ } finally { beating = false; }
  }, HEARTBEAT_MS);
}

function wire() {
  watchServer();
  for (const b of document.querySelectorAll(".tool[data-tool]")) b.onclick = () => setTool(b.dataset.tool);
  $("undo").onclick = () => editor.edit("undo");
  $("redo").onclick = () => editor.edit("redo");
  $("fit").onclick = () => editor.fit();
  $("opacity").oninput = (e) => {
    editor.opacity = Number(e.target.value) / 100;
    document.body.style.setProperty("--mask-opacity", String(Math.min(1, editor.opacity / 0.55)));
    editor.redraw();
  };
  $("clear").onclick = () => editor.edit("clear");
  $("propagate").onclick = () => propagate();
  $("propagate-stop").onclick = () => api.stopPropagation(S.sid).catch((err) => toast(err.message, true));
  $("export-cancel").onclick = () => api.cancelExport(S.sid, S.exportId).catch((err) => toast(err.message, true));
  $("review-open").onclick = () => review.enter();
  $("features-layer").onchange = () => { $("features-layer").blur(); showFeatures(); };
  $("polygons-layer").onchange = () => {
    $("polygons-layer").blur();
    editor.showPolygons = $("polygons-layer").checked;
    editor.redraw();
    loadPolygons();
  };
  $("export").onclick = () => exportZip();
  $("new-session").onclick = () => newSession().catch((err) => toast(err.message, true));
  $("promote-open").onclick = () => promote(S.current);
  $("help-button").onclick = () => $("help").classList.toggle("hidden");
  $("help").onclick = (e) => { if (e.target === $("help")) $("help").classList.add("hidden"); };
  $("upload").onchange = (e) => upload([...e.target.files]);
  $("classes").ondblclick = (e) => { // double-click a class to rename it
    const item = e.target.closest(".class-item");
    const c = item && !e.target.closest("input, button") && S.classes.find((x) => x.name === item.dataset.name);
    if (c) renameInPlace(item, c);
  };
  $("class-form").onsubmit = (e) => {
    e.preventDefault();
    const input = $("class-name"), name = input.value.trim();
    if (!name) return;
    addClass(name).then(() => { input.value = ""; input.blur(); }).catch((err) => toast(err.message, true));
  };
  window.addEventListener("keydown", onKey);
  window.addEventListener("beforeunload", (e) => {
    if (!unsaved()) return;
    e.preventDefault();
    e.returnValue = ""; // the browser asks before leaving with an edit not yet saved
  });
}

async function start() {
  wire();
  const [info, images, session] = await Promise.all([api.info(), api.images(), api.currentSession()]);
  S.images = images.images;
  $("folder").textContent = `${info.folder.split(/[\\/]/).filter(Boolean).pop() || info.folder}/`;
  $("folder").title = `Serving ${info.folder}`;
  $("model-name").textContent = `${info.model} · ${info.device}`;
  renderFormats(info.formats);
  for (const skipped of images.skipped) toast(`${skipped.name}: ${skipped.reason}`, true);
  setTool("box");
  await applyState(session);
  if (session.version === 0) await addClass("object"); // a new session starts with one class
  else if (session.references.length) toast(`Resumed the session: ${session.references.length} references`);
  renderGallery();
  renderTargets();
  renderProgress();
  renderSaved();
  document.body.dataset.ready = "1";
}

start().catch((err) => toast(`Could not start: ${err.message}`, true));
