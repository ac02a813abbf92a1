// Review mode: step through the targets at full size with their predicted masks over them, and
// accept, reject or fix each (fix: the prediction becomes a reference mask to correct with the
// brush, the eraser or prompts; it stays in the export as "corrected"). Filters and counts per state.
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
export const LOW_SCORE = 0.5;

const FILTERS = {
  all: () => true,
  unreviewed: (item) => item.state === "unreviewed",
  rejected: (item) => item.state === "rejected",
  low: (item) => item.state !== "fixed" && item.score !== null && item.score < LOW_SCORE,
  accepted: (item) => item.state === "accepted",
  fixed: (item) => item.state === "fixed",
};

export class Review {
  // hooks: sid(), rev(), editor, open(name) -> Promise, promote(name) -> Promise<bool>,
  //        prepare() -> Promise<bool> (propagate first), changed(items), toast(text, error)
  constructor(hooks) {
    this.hooks = hooks;
    this.active = false;
    this.items = [];
    this.counts = {};
    this.current = null;
    $("review-filter").onchange = () => { $("review-filter").blur(); this.applyFilter(); }; // keys step again
    $("review-sort").onchange = () => { $("review-sort").blur(); this.applySort(); };
    this.margins = {}; // target name -> its feature margin (sansa/web/features.py), for the sort
    $("review-prev").onclick = () => this.step(-1);
    $("review-next").onclick = () => this.step(1);
    $("review-accept").onclick = () => this.decide("accepted");
    $("review-reject").onclick = () => this.decide("rejected");
    $("review-fix").onclick = () => this.fix();
    $("review-undo").onclick = () => this.decide(null);
    $("review-exit").onclick = () => this.exit();
  }

  get filter() { return $("review-filter").value; }

  // The items in the chosen order: the folder's; by score, least confident first (no score last);
  // or the lowest feature margin first (the targets whose objects sit nearest another class's
  // references; those without a margin last).
  ordered() {
    const sort = $("review-sort").value;
    if (sort === "folder") return this.items;
    const key = sort === "score" ? (i) => (i.score === null ? Infinity : i.score) : (i) => this.margins[i.name] ?? Infinity;
    return [...this.items].sort((a, b) => key(a) - key(b));
  }

  filtered() { return this.ordered().filter(FILTERS[this.filter]); }

  async applySort() {
    if ($("review-sort").value === "margin") {
      try {
        this.margins = (await api.margins(this.hooks.sid())).margins;
      } catch (err) {
        this.hooks.toast(err.message, true);
      }
    }
    this.render();
    await this.show(this.filtered()[0]?.name || null);
  }

  // From the keyboard: O switches the order, T the next filter.
  toggleOrder() {
    const select = $("review-sort");
    select.selectedIndex = (select.selectedIndex + 1) % select.options.length;
    this.hooks.toast(select.options[select.selectedIndex].text);
    return this.applySort(); // from the start of the new order
  }

  nextFilter() {
    const select = $("review-filter");
    select.selectedIndex = (select.selectedIndex + 1) % select.options.length;
    this.hooks.toast(`Showing: ${select.options[select.selectedIndex].text}`);
    return this.applyFilter();
  }

  async enter() {
    if (!(await this.hooks.prepare())) return;
    await this.refresh();
    this.active = true;
    document.body.classList.add("reviewing");
    $("review-bar").classList.remove("hidden");
    const list = this.filtered();
    if (!list.length && this.filter !== "all") $("review-filter").value = "all";
    await this.show(this.filtered()[0]?.name || null);
  }

  exit() {
    this.active = false;
    document.body.classList.remove("reviewing");
    $("review-bar").classList.add("hidden");
    this.hooks.editor.readOnly = false;
    this.hooks.editor.setOverlay(null);
    this.hooks.changed(this.items);
  }

  async refresh() {
    this.take(await api.review(this.hooks.sid()));
    if ($("review-sort").value === "margin") this.margins = (await api.margins(this.hooks.sid())).margins;
  }

  take(list) {
    this.items = list.items;
    this.counts = list.counts;
    this.hooks.changed(this.items);
    this.render();
  }

  item(name = this.current) { return this.items.find((i) => i.name === name) || null; }

  render() {
    const c = this.counts;
    $("review-counts").textContent = `${c.unreviewed || 0} to review · ${c.accepted || 0} accepted · `
      + `${c.rejected || 0} rejected · ${c.fixed || 0} fixed`;
    const list = this.filtered(), item = this.item();
    const at = list.findIndex((i) => i.name === this.current);
    $("review-pos").textContent = `${at < 0 ? "–" : at + 1} / ${list.length}`;
    $("review-name").textContent = item ? item.name : "nothing to review here";
    const state = item ? item.state : "";
    $("review-state").textContent = state;
    $("review-state").dataset.state = state;
    const margin = item ? this.margins[item.name] : null;
    $("review-stale").textContent = item?.stale ? "accepted with older references" : "";
    const objects = item && item.objects !== null
      ? ` · ${item.objects} objects` + (item.rejected_objects ? ` (${item.rejected_objects} rejected)` : "") : "";
    $("review-score").textContent = (item && item.score !== null ? `score ${item.score.toFixed(2)}` : "") + objects
      + ($("review-sort").value === "margin" && typeof margin === "number" ? ` · margin ${margin.toFixed(2)}` : "");
    $("review-score").classList.toggle("low", !!item && item.score !== null && item.score < LOW_SCORE);
    for (const id of ["review-accept", "review-reject", "review-fix"]) $(id).disabled = !item || state === "fixed";
    $("review-undo").disabled = !item || !["accepted", "rejected"].includes(state);
  }

  async show(name) {
    this.current = name;
    this.render();
    const editor = this.hooks.editor;
    if (!name) { editor.setOverlay(null); return; }
    const item = this.item(name);
    editor.readOnly = item.state !== "fixed";
    await this.hooks.open(name); // with what the export writes for it over the image
  }

  // The next (or previous) item of the filtered list, counted from the current one's place.
  async step(delta) {
    const order = this.ordered().map((i) => i.name);
    const here = order.indexOf(this.current);
    const list = this.filtered().map((i) => i.name);
    if (!list.length) return this.show(null);
    let next;
    if (delta > 0) next = list.find((n) => order.indexOf(n) > here) ?? list[0];
    else next = [...list].reverse().find((n) => order.indexOf(n) < here) ?? list[list.length - 1];
    await this.show(next);
  }

  async applyFilter() {
    const list = this.filtered();
    await this.show(list.some((i) => i.name === this.current) ? this.current : list[0]?.name || null);
  }

  // Accept, reject, or (state null) take the decision back and stay.
  async decide(state) {
    const item = this.item();
    if (!item || item.state === "fixed" || (state === null && item.state === "unreviewed")) return;
    try {
      this.take(await api.decide(this.hooks.sid(), item.name, state));
      this.hooks.toast(`${item.name}: ${state || "decision taken back"}`);
      if (state === null) this.render(); else await this.step(1);
    } catch (err) {
      this.hooks.toast(err.message, true);
    }
  }

  async fix() {
    const item = this.item();
    if (!item || item.state === "fixed") return;
    const name = item.name;
    this.hooks.editor.readOnly = false;
    if (await this.hooks.promote(name)) await this.refresh();
    else this.hooks.editor.readOnly = true;
    if (this.current === name) this.render();
  }
}
