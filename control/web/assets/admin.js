// The operator view (/admin): create a meeting and share its links; the node live (one event
// stream: each worker's packets in and out per second, drops by reason, joins and failed
// joins, the open meetings and who is present); the usage report as CSV. Rates are taken
// from two consecutive readings of the totals and their times, as Prometheus's rate() would.
"use strict";

const KEPT = "operator";
let token = relay.kept.get(KEPT);
let live = null;
let previous = null;  // the last status reading, for rates

function notice(text, kind = "error") { relay.say("notice", text, kind); }

document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  token = document.getElementById("token").value;
  document.getElementById("token").value = "";
  await open();
});

async function open() {
  try {
    showStatus(await relay.call("GET", "/v1/status", {token}));
  } catch (error) {
    token = null;
    relay.kept.forget(KEPT);
    notice(error.status === 401 ? "That is not the operator token." : relay.explain(error));
    return;
  }
  relay.kept.set(KEPT, token);
  notice("");
  relay.show("sign-in", false);
  relay.show("console", true);
  live = relay.stream("/v1/events", token, {
    open: () => notice(""),
    status: showStatus,
    error: (e) => notice(`The live view stopped: ${e.message}.`),
    lost: () => notice("Reconnecting to the relay…", "warning"),
  });
}

document.getElementById("sign-out").addEventListener("click", () => {
  if (live) live.stop();
  token = null;
  previous = null;
  relay.kept.forget(KEPT);
  relay.show("console", false);
  relay.show("sign-in", true);
});

// -- creating a meeting --

document.getElementById("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {
    title: document.getElementById("c-title").value.trim(),
    mode: document.getElementById("c-mode").value,
  };
  const password = document.getElementById("c-password").value;
  const panelist = document.getElementById("c-panelist").value;
  if (password) body.password = password;
  if (panelist) body.panelist_password = panelist;
  let created;
  try {
    created = await relay.call("POST", "/v1/meetings", {token, body});
  } catch (error) {
    notice(`Create: ${relay.explain(error)}`);
    return;
  }
  notice("");
  event.target.reset();
  const links = {join: `/m/${encodeURIComponent(created.id)}`,
    host: `/host/${encodeURIComponent(created.id)}`};
  for (const [which, path] of Object.entries(links)) {
    const a = document.getElementById(`created-${which}`);
    a.href = path;
    a.textContent = new URL(path, location.href).href;
  }
  document.getElementById("created-key").textContent = created.host_key;
  document.getElementById("created-password").textContent =
    created.password || "(the one you chose)";
  relay.show("created", true);
});

// -- the node, live --

function rate(now, before, key, seconds) {
  if (!before || seconds <= 0) return null;
  return Math.max(0, (now[key] - before[key]) / seconds);
}

function showStatus(s) {
  const seconds = previous ? s.at - previous.at : 0;
  const before = new Map((previous ? previous.workers : []).map((w) => [w.worker, w]));
  const shown = (r, f = relay.number) => (r === null ? "–" : f(Math.round(r)));
  document.querySelector("#workers tbody").replaceChildren(...s.workers.map((w) => {
    const b = before.get(w.worker);
    const pin = rate(w, b, "packets_in", seconds), pout = rate(w, b, "packets_out", seconds);
    const bits = rate(w, b, "bytes_out", seconds);
    return relay.el("tr", {"data-worker": w.worker, "data-pps-in": pin ?? "",
      "data-pps-out": pout ?? ""},
      relay.el("td", {}, w.worker), relay.el("td", {}, w.up ? "yes" : "NO"),
      relay.el("td", {class: "n"}, shown(pin)), relay.el("td", {class: "n"}, shown(pout)),
      relay.el("td", {class: "n"}, bits === null ? "–" : `${relay.bytes(bits * 8).replace("B", "bit")}`),
      relay.el("td", {class: "n"}, relay.number(w.dropped)),
      relay.el("td", {class: "n"}, relay.number(w.restarts)));
  }));
  const h = s.health;
  document.getElementById("summary").textContent =
    `${h.workers_reporting} of ${h.workers_expected} workers reporting · ` +
    `${relay.number(h.meetings)} meetings · ${relay.number(h.participants)} participants`;
  const totals = [
    ["Packets in / out", `${relay.number(s.packets_in)} / ${relay.number(s.packets_out)}`],
    ["Bytes in / out", `${relay.bytes(s.bytes_in)} / ${relay.bytes(s.bytes_out)}`],
    ["Joins", relay.number(s.joins)],
    ["Joins refused", relay.number(Object.values(s.join_failures).reduce((a, b) => a + b, 0))],
  ];
  document.getElementById("totals").replaceChildren(
    ...totals.flatMap(([k, v]) => [relay.el("dt", {}, k), relay.el("dd", {}, v)]));
  const byReason = (table, counts) => {
    const rows = Object.entries(counts).filter(([, n]) => n > 0);
    document.querySelector(`#${table} tbody`).replaceChildren(...(rows.length ? rows.map(([r, n]) =>
      relay.el("tr", {}, relay.el("th", {scope: "row"}, r), relay.el("td", {class: "n"}, relay.number(n))))
      : [relay.el("tr", {}, relay.el("td", {}, "none"))]));
  };
  byReason("drops", s.drops);
  byReason("failures", s.join_failures);
  document.querySelector("#meetings tbody").replaceChildren(...s.meetings.map((m) =>
    relay.el("tr", {"data-meeting": m.id},
      relay.el("td", {}, m.title), relay.el("td", {}, m.mode),
      relay.el("td", {class: "n"}, relay.number(s.present[m.id] || 0)),
      relay.el("td", {}, [m.locked ? "locked" : "open", m.recording ? "recording" : null]
        .filter(Boolean).join(", ")),
      relay.el("td", {}, relay.time(m.created_at)),
      relay.el("td", {}, relay.el("a", {href: `/m/${encodeURIComponent(m.id)}`}, "join"), " ",
        relay.el("a", {href: `/host/${encodeURIComponent(m.id)}`}, "host console")))));
  document.querySelector("#nodes tbody").replaceChildren(...s.nodes.map((n) =>
    relay.el("tr", {"data-node": n.name, "data-state": n.state},
      relay.el("th", {scope: "row"}, n.name), relay.el("td", {}, n.state),
      relay.el("td", {class: "n"}, relay.number(n.load)),
      relay.el("td", {class: "n"}, relay.number(n.capacity)),
      relay.el("td", {class: "n"}, n.workers),
      relay.el("td", {}, `${n.media.host}:${n.media.port}`),
      relay.el("td", {}, n.state === "gone" ? "" : relay.el("button", {type: "button",
        "data-action": n.state === "draining" ? "undrain" : "drain",
        on: {click: () => drain(n.name, n.state !== "draining")}},
      n.state === "draining" ? "Take back" : "Drain")))));
  document.querySelector("#ended tbody").replaceChildren(...s.ended.map((m) =>
    relay.el("tr", {"data-meeting": m.id},
      relay.el("td", {}, m.title), relay.el("td", {}, m.mode),
      relay.el("td", {}, relay.time(m.created_at)),
      relay.el("td", {}, m.ended_at ? relay.time(m.ended_at) : ""),
      relay.el("td", {}, relay.el("a", {href: `/host/${encodeURIComponent(m.id)}`}, "host console")))));
  previous = s;
}

async function drain(name, draining) {
  // Draining a node places no new participants there; those present stay (control/nodes.py).
  try {
    await relay.call(draining ? "POST" : "DELETE", `/v1/nodes/${encodeURIComponent(name)}/drain`,
      {token});
    notice("");
  } catch (error) {
    notice(`Drain: ${relay.explain(error)}`);
  }
}

document.getElementById("usage-csv").addEventListener("click", () =>
  relay.download("/v1/reports/usage?format=csv", token, "usage.csv")
    .catch((error) => notice(relay.explain(error))));

if (token) open();
