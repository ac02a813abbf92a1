// Thin client of the JSON API (see /docs). Every error answer is {detail: "one line"}.
// Every call carries the server's token (sansa/web/security.py): the page gets it in
// <meta name="sansa-token">, sends it as X-Sansa-Token, and in ?token= where only a URL can carry it.
// Every change carries the session revision it was made on (X-Sansa-Revision): a change made on
// an older revision (another tab changed the session) is refused with 409 {stale: true}. Changes
// go one at a time, each on the revision the previous one answered. While the server cannot be
// reached, calls wait and try again (hooks.offline(true/false) shows and hides the banner).
const TOKEN = document.querySelector('meta[name="sansa-token"]')?.content || "";
const AUTH = { "X-Sansa-Token": TOKEN };
const RETRY_MS = 1000;
export const withToken = (url) => `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}`;

export class ApiError extends Error {
  constructor(status, detail, stale = false) {
    super(detail);
    this.status = status;
    this.stale = stale; // a change refused: the session changed in another tab
  }
}

export const hooks = { offline: () => {}, stale: async () => {} };
let revision = null; // the session revision this page shows
let changes = Promise.resolve(); // changes go one at a time
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// fetch, waiting out a server that is down or restarting (the banner says so meanwhile)
async function reach(path, init) {
  for (let failed = false; ; failed = true) {
    try {
      const res = await fetch(path, init);
      if (failed) hooks.offline(false);
      return res;
    } catch (err) {
      if (!(err instanceof TypeError)) throw err; // a network failure is a TypeError
      if (!failed) hooks.offline(true);
      await sleep(RETRY_MS);
    }
  }
}

async function send(method, path, body, change) {
  const init = { method, headers: { ...AUTH } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (change && revision !== null) init.headers["X-Sansa-Revision"] = String(revision);
  const res = await reach(path, init);
  const answered = res.headers.get("X-Sansa-Revision");
  if (answered !== null) revision = Number(answered);
  if (!res.ok) {
    let out = {};
    try { out = await res.json(); } catch (_) { /* not JSON */ }
    const err = new ApiError(res.status, out.detail || `${res.status} ${res.statusText}`, !!out.stale);
    if (err.stale) await hooks.stale(err);
    throw err;
  }
  return res.status === 204 ? null : res.json();
}

const call = (method, path, body) => send(method, path, body, false);
function change(method, path, body) {
  const result = changes.then(() => send(method, path, body, true));
  changes = result.catch(() => {});
  return result;
}

const q = encodeURIComponent;

export const api = {
  setRevision: (value) => { revision = value; },
  info: () => call("GET", "/api/info"),
  images: () => call("GET", "/api/images"),
  imageUrl: (name) => withToken(`/api/images/${q(name)}`),
  thumbUrl: (name, side) => withToken(`/api/images/${q(name)}/thumb?max_side=${side}`),
  async upload(file) {
    const form = new FormData();
    form.append("file", file);
    const res = await reach("/api/images", { method: "POST", body: form, headers: AUTH });
    const out = await res.json().catch(() => ({}));
    if (!res.ok) throw new ApiError(res.status, out.detail || res.statusText);
    return out;
  },
  newSession: () => call("POST", "/api/sessions"),
  currentSession: () => call("GET", "/api/sessions/current"),
  session: (sid) => call("GET", `/api/sessions/${sid}`),
  addClass: (sid, name) => change("POST", `/api/sessions/${sid}/classes`, { name }),
  updateClass: (sid, name, changes) => change("PATCH", `/api/sessions/${sid}/classes/${q(name)}`, changes),
  removeClass: (sid, name) => change("DELETE", `/api/sessions/${sid}/classes/${q(name)}`),
  restoreClass: (sid, id) => change("POST", `/api/sessions/${sid}/trash/${id}/restore`),
  // undo: how many of the server's undo steps this change takes back (the page's undo)
  putReference: (sid, image, label, prompt, undo = 0) =>
    change("PUT", `/api/sessions/${sid}/references${undo ? `?undo=${undo}` : ""}`, { image, label, prompt }),
  undoReference: (sid, image, label) => change("POST", `/api/sessions/${sid}/references/undo`, { image, label }),
  promote: (sid, image, label) => change("POST", `/api/sessions/${sid}/references/promote`, { image, label }),
  polygons: (sid, id) => call("GET", `/api/sessions/${sid}/references/${id}/polygons`),
  removeReference: (sid, id, keepFix = false, undo = 0) =>
    change("DELETE", `/api/sessions/${sid}/references/${id}?keep_fix=${keepFix}${undo ? `&undo=${undo}` : ""}`),
  target: (sid, name, side, rev, hide = []) => call("GET", `/api/sessions/${sid}/targets/${q(name)}?max_side=${side}&v=${rev}`
    + hide.map((h) => `&hide=${q(h)}`).join("")),
  editObjects: (sid, name, body, side) =>
    change("POST", `/api/sessions/${sid}/targets/${q(name)}/objects?max_side=${side}`, body),
  objectOptions: (sid, options) => change("PUT", `/api/sessions/${sid}/objects/options`, options),
  review: (sid) => call("GET", `/api/sessions/${sid}/review`),
  margins: (sid) => call("GET", `/api/sessions/${sid}/margins`),
  featuresUrl: (sid, name, side, rev) =>
    withToken(`/api/sessions/${sid}/targets/${q(name)}/features.png?max_side=${side}&v=${rev}`),
  decide: (sid, name, state) => change("PUT", `/api/sessions/${sid}/review/${q(name)}`, { state }),
  startExport: (sid, formats, options = {}) => call("POST", `/api/sessions/${sid}/exports`, { formats, ...options }),
  exportStatus: (sid, id) => call("GET", `/api/sessions/${sid}/exports/${id}`),
  cancelExport: (sid, id) => call("DELETE", `/api/sessions/${sid}/exports/${id}`),
  stopPropagation: (sid) => call("DELETE", `/api/sessions/${sid}/propagate`),
  propagate: (sid) => call("POST", `/api/sessions/${sid}/propagate`),
  progress: (sid) => call("GET", `/api/sessions/${sid}/propagate`),
  // Save a finished export: the browser streams the zip to disk (the server streams it from a file).
  download(path, filename) {
    const link = Object.assign(document.createElement("a"), { href: withToken(path), download: filename });
    document.body.append(link);
    link.click();
    link.remove();
  },
};
