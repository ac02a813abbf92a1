// Thin client of the JSON API (see /docs). Every error answer is {detail: "one line"}.
// Every call carries the server's per-launch token (sansa/web/security.py): the page gets it in
// <meta name="sansa-token">, sends it as X-Sansa-Token, and in ?token= where only a URL can carry it.
const TOKEN = document.querySelector('meta[name="sansa-token"]')?.content || "";
const AUTH = { "X-Sansa-Token": TOKEN };
export const withToken = (url) => `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}`;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function call(method, path, body) {
  const init = { method, headers: { ...AUTH } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try {
      detail = (await res.json()).detail || detail;
    } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, detail);
  }
  return res.status === 204 ? null : res.json();
}

const q = encodeURIComponent;

export const api = {
  info: () => call("GET", "/api/info"),
  images: () => call("GET", "/api/images"),
  imageUrl: (name) => withToken(`/api/images/${q(name)}`),
  thumbUrl: (name, side) => withToken(`/api/images/${q(name)}/thumb?max_side=${side}`),
  async upload(file) {
    const form = new FormData();
    form.append("file", file);
    const res = await fetch("/api/images", { method: "POST", body: form, headers: AUTH });
    const out = await res.json().catch(() => ({}));
    if (!res.ok) throw new ApiError(res.status, out.detail || res.statusText);
    return out;
  },
  newSession: () => call("POST", "/api/sessions"),
  currentSession: () => call("GET", "/api/sessions/current"),
  session: (sid) => call("GET", `/api/sessions/${sid}`),
  addClass: (sid, name) => call("POST", `/api/sessions/${sid}/classes`, { name }),
  updateClass: (sid, name, changes) => call("PATCH", `/api/sessions/${sid}/classes/${q(name)}`, changes),
  removeClass: (sid, name) => call("DELETE", `/api/sessions/${sid}/classes/${q(name)}`),
  putReference: (sid, image, label, prompt) =>
    call("PUT", `/api/sessions/${sid}/references`, { image, label, prompt }),
  promote: (sid, image, label) => call("POST", `/api/sessions/${sid}/references/promote`, { image, label }),
  removeReference: (sid, id) => call("DELETE", `/api/sessions/${sid}/references/${id}`),
  target: (sid, name, side, rev) => call("GET", `/api/sessions/${sid}/targets/${q(name)}?max_side=${side}&v=${rev}`),
  review: (sid) => call("GET", `/api/sessions/${sid}/review`),
  margins: (sid) => call("GET", `/api/sessions/${sid}/margins`),
  featuresUrl: (sid, name, side, rev) =>
    withToken(`/api/sessions/${sid}/targets/${q(name)}/features.png?max_side=${side}&v=${rev}`),
  decide: (sid, name, state) => call("PUT", `/api/sessions/${sid}/review/${q(name)}`, { state }),
  startExport: (sid, formats, options = {}) => call("POST", `/api/sessions/${sid}/exports`, { formats, ...options }),
  exportStatus: (sid, id) => call("GET", `/api/sessions/${sid}/exports/${id}`),
  propagate: (sid) => call("POST", `/api/sessions/${sid}/propagate`),
  progress: (sid) => call("GET", `/api/sessions/${sid}/propagate`),
  // Save a finished export: the browser streams the zip to disk (the server streams it from a file).
  download(path, filename) {
    const link = Object.assign(document.createElement("a"), { href: withToken(path), download: filename });
    document.body.append(link);
    link.click();
    link.remove();
  },
  async exportZip(sid, formats) {
    const params = formats.map((f) => `formats=${q(f)}`).join("&");
    const res = await fetch(`/api/sessions/${sid}/export?${params}`, { headers: AUTH });
    if (!res.ok) {
      const out = await res.json().catch(() => ({}));
      throw new ApiError(res.status, out.detail || res.statusText);
    }
    return res.blob();
  },
};
