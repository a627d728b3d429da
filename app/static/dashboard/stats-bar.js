// The counts by status at the top of the page (jobStats), read again after status changes.

import { h, replaceChildren, setText } from "./dom.js";
import { STATUSES } from "./jobs-model.js";
import { JOB_STATS } from "./queries.js";

const TILES = [...STATUSES, "TOTAL"];

export class StatsBar {
  constructor(element, api) {
    this.api = api;
    this.counts = new Map();
    replaceChildren(
      element,
      TILES.map((status) => {
        const count = h("span", { class: "count" }, "–");
        this.counts.set(status, count);
        return h(
          "div",
          { class: `stat status-${status.toLowerCase()}`, dataset: { status } },
          count,
          h("span", { class: "label" }, label(status)),
        );
      }),
    );
  }

  async refresh() {
    const { jobStats } = await this.api(JOB_STATS);
    for (const status of TILES) {
      setText(this.counts.get(status), jobStats[status.toLowerCase()]);
    }
  }
}

export function label(status) {
  return status.charAt(0) + status.slice(1).toLowerCase();
}
