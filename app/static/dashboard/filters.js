// The filter above the table: a checkbox per status and a search field, read as the jobs
// query's filter.

import { h } from "./dom.js";
import { STATUSES } from "./jobs-model.js";
import { label } from "./stats-bar.js";

const SEARCH_DELAY_MS = 250;

export class Filters {
  /** onChange({ statuses, search }) whenever the user changes a condition. */
  constructor({ fieldset, search, onChange, signal }) {
    this.search = search;
    this.onChange = onChange;
    for (const old of fieldset.querySelectorAll("label")) old.remove();
    search.value = "";
    this.boxes = STATUSES.map((status) => {
      const id = `filter-${status.toLowerCase()}`;
      const box = h("input", { type: "checkbox", id, value: status, checked: true });
      box.addEventListener("change", () => this.#changed());
      const className = `filter-status status-${status.toLowerCase()}`;
      fieldset.append(h("label", { for: id, class: className }, box, label(status)));
      return box;
    });
    let timer = null;
    search.addEventListener(
      "input",
      () => {
        clearTimeout(timer);
        timer = setTimeout(() => this.#changed(), SEARCH_DELAY_MS);
      },
      { signal },
    );
    search.form?.addEventListener(
      "submit",
      (event) => {
        event.preventDefault();
        clearTimeout(timer);
        this.#changed();
      },
      { signal },
    );
    signal?.addEventListener("abort", () => clearTimeout(timer));
  }

  /** `statuses` null when every status is wanted. */
  current() {
    const checked = this.boxes.filter((box) => box.checked).map((box) => box.value);
    return {
      statuses: checked.length === this.boxes.length ? null : checked,
      search: this.search.value,
    };
  }

  #changed() {
    this.onChange(this.current());
  }
}
