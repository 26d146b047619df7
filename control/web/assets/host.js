// The host console (/host/ID): the meeting's participants live (one event stream, no polling),
// lock, recording, end; mute, expel and promote a participant; registrants (settings, approve,
// reject, correct, erase, export); the audit log and the usage so far. Every action is a call
// of the public API with the host key (or the operator token) in the Authorization header.
"use strict";

const id = relay.meetingId();
const base = `/v1/meetings/${encodeURIComponent(id)}`;
const KEPT = `host.${id}`;
let key = relay.kept.get(KEPT);
let live = null;
let meeting = null;
let auditDue = 0;
// The registration form holds changes the host has not saved: the meeting's live updates
// leave it alone until Save (they would undo a click made just before one arrives).
let regEdited = false;

function notice(text, kind = "error") { relay.say("notice", text, kind); }

async function act(what, method, path, body) {
  try {
    const answer = await relay.call(method, path, {token: key, body});
    notice("");
    return answer;
  } catch (error) {
    notice(`${what}: ${relay.explain(error)}`);
    if (error.status === 401) signOut();
    return null;
  }
}

// -- signing in --

document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  key = document.getElementById("key").value;
  document.getElementById("key").value = "";
  await open();
});

async function open() {
  try {
    meeting = await relay.call("GET", base, {token: key});
  } catch (error) {
    key = null;
    relay.kept.forget(KEPT);
    notice(error.status === 401 || error.status === 403
      ? "That key does not open this meeting's console." : relay.explain(error));
    return;
  }
  relay.kept.set(KEPT, key);
  notice("");
  relay.show("sign-in", false);
  relay.show("console", true);
  const link = document.getElementById("join-link");
  link.href = `/m/${encodeURIComponent(id)}`;
  link.textContent = new URL(link.href, location.href).href;
  showMeeting(meeting);
  live = relay.stream(`${base}/events`, key, {
    open: () => notice(""),
    meeting: showMeeting,
    usage: showUsage,
    participants: showPeople,
    error: (e) => notice(`The live view stopped: ${e.message}.`),
    lost: () => notice("Reconnecting to the relay…", "warning"),
  });
  loadRegistrants();
  loadAudit();
}

function signOut() {
  if (live) live.stop();
  live = null;
  key = null;
  relay.kept.forget(KEPT);
  relay.show("console", false);
  relay.show("sign-in", true);
}
document.getElementById("sign-out").addEventListener("click", signOut);

// -- the meeting --

function showMeeting(m) {
  meeting = m;
  document.getElementById("title").textContent = m.title;
  document.title = `${m.title} · host console · relay`;
  const lock = document.getElementById("lock");
  lock.textContent = m.locked ? "Unlock" : "Lock";
  lock.setAttribute("aria-pressed", String(m.locked));
  const record = document.getElementById("record");
  record.textContent = m.recording ? "Stop recording" : "Start recording";
  record.setAttribute("aria-pressed", String(m.recording));
  const ended = m.state === "ended";
  for (const b of ["lock", "record", "end"]) document.getElementById(b).disabled = ended;
  document.getElementById("summary").textContent = [
    m.mode === "webinar" ? "Webinar" : "Meeting", ended ? "ended" : "open",
    m.locked ? "locked" : null, m.recording ? "recording" : null,
  ].filter(Boolean).join(" · ");
  const reg = m.registration;
  if (!regEdited) {
    document.getElementById("reg-enabled").checked = Boolean(reg && reg.enabled);
    if (reg && ["manual", "automatic"].includes(reg.approval)) {
      document.getElementById("reg-approval").value = reg.approval;
    }
  }
  refreshAudit();
}

function showUsage(u) {
  const rows = [
    ["Duration", relay.duration(u.duration_s)],
    ["Present", relay.number(u.present)],
    ["Joined in all", relay.number(u.total_participants)],
    ["Peak", relay.number(u.peak_participants)],
    ["Participant-minutes", u.participant_minutes.toFixed(1)],
    ["Packets in / out", `${relay.number(u.packets_in)} / ${relay.number(u.packets_out)}`],
    ["Bytes out", relay.bytes(u.bytes_out)],
    ["Features", u.features.join(", ") || "–"],
  ];
  document.getElementById("usage").replaceChildren(
    ...rows.flatMap(([k, v]) => [relay.el("dt", {}, k), relay.el("dd", {}, v)]));
}

document.getElementById("lock").addEventListener("click", () =>
  act("Lock", "PUT", `${base}/controls`, {locked: !meeting.locked}));
document.getElementById("record").addEventListener("click", () =>
  act("Recording", "PUT", `${base}/controls`, {recording: !meeting.recording}));
document.getElementById("end").addEventListener("click", async () => {
  if (!window.confirm("End the meeting for everyone now?")) return;
  await act("End", "POST", `${base}/end`);
});

// -- participants --

function quality(reception) {
  if (!reception) return "–";
  const parts = [`loss ${(100 * reception.loss).toFixed(1)} %`,
    `jitter ${reception.jitter_ms.toFixed(0)} ms`];
  if (reception.rtt_ms !== null) parts.push(`RTT ${reception.rtt_ms.toFixed(0)} ms`);
  return parts.join(", ");
}

function showPeople({count, items}) {
  document.getElementById("people-count").textContent =
    `(${relay.number(items.filter((p) => p.left_at === null && !p.expelled).length)} present` +
    (count > items.length ? `, first ${items.length} of ${relay.number(count)} shown)` : ")");
  const rows = items.map((p) => {
    const gone = p.left_at !== null || p.expelled;
    const state = p.expelled ? "expelled" : p.left_at !== null ? "left" : p.muted ? "muted" : "present";
    const buttons = [];
    if (!gone && meeting && meeting.state !== "ended") {
      buttons.push(relay.el("button", {type: "button", "data-action": "mute", on: {click: () =>
        act("Mute", "PATCH", `${base}/participants/${p.id}`, {muted: !p.muted})}},
        p.muted ? "Unmute" : "Mute"));
      if (p.role === "attendee") {
        buttons.push(relay.el("button", {type: "button", "data-action": "promote", on: {click: () =>
          act("Promote", "PATCH", `${base}/participants/${p.id}`, {role: "panelist"})}},
          "Make panelist"));
      }
      if (p.role !== "host") {
        buttons.push(relay.el("button", {type: "button", class: "danger", "data-action": "expel",
          on: {click: () => act("Expel", "PATCH", `${base}/participants/${p.id}`, {expel: true})}},
          "Expel"));
      }
    }
    const media = p.media;
    return relay.el("tr", {"data-participant": p.id, "data-name": p.name, "data-state": state},
      relay.el("td", {}, p.name),
      relay.el("td", {}, p.role),
      relay.el("td", {}, state),
      relay.el("td", {class: "n"}, `${relay.number(media.packets_in)} / ${relay.number(media.packets_out)}`),
      relay.el("td", {}, quality(media.reception)),
      relay.el("td", {}, media.address_known_at ? `latched ${relay.time(media.address_known_at)}` : "not yet"),
      relay.el("td", {class: "actions"}, ...buttons));
  });
  document.querySelector("#people tbody").replaceChildren(...rows);
  refreshAudit();
}

// -- registrants --

function regNotice(text, kind = "info") { relay.say("reg-notice", text, kind); }

const regForm = document.getElementById("registration-settings");
regForm.addEventListener("change", () => { regEdited = true; });
regForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const enabled = document.getElementById("reg-enabled").checked;
  const approval = document.getElementById("reg-approval").value;
  const saved = await act("Registration", "PUT", `${base}/registration`, {enabled, approval});
  if (saved) {
    regEdited = false;
    regNotice(enabled ? "Registration is required to join." : "Registration is off.");
  }
});

async function loadRegistrants() {
  let list;
  try {
    list = await relay.call("GET", `${base}/registrations`, {token: key});
  } catch (error) {
    if (error.status === 404) {
      document.querySelector("#registrants tbody").replaceChildren();
      return;  // this meeting takes no registrations (or this server none)
    }
    regNotice(relay.explain(error), "error");
    return;
  }
  const rows = list.map((r) => {
    const f = r.fields || {};
    const name = r.erased ? "(erased)" : `${f.first_name || ""} ${f.last_name || ""}`.trim();
    const decide = (status) => async () => {
      const answer = await act("Decide", "PATCH", `${base}/registrations/${r.id}`, {status});
      if (answer && answer.join_token) {
        regNotice(`Approved ${name}. Their join token (shown this once; it was also emailed ` +
          `where email is set up): ${answer.join_token}`, "ok");
        document.getElementById("reg-notice").dataset.token = answer.join_token;
      }
      loadRegistrants();
    };
    const buttons = [];
    if (!r.erased) {
      if (r.status !== "approved") {
        buttons.push(relay.el("button", {type: "button", "data-action": "approve",
          on: {click: decide("approved")}}, "Approve"));
      }
      if (r.status !== "rejected") {
        buttons.push(relay.el("button", {type: "button", "data-action": "reject",
          on: {click: decide("rejected")}}, "Reject"));
      }
      buttons.push(relay.el("button", {type: "button", "data-action": "correct",
        on: {click: () => correct(r)}}, "Correct"));
      buttons.push(relay.el("button", {type: "button", class: "danger", "data-action": "erase",
        on: {click: async () => {
          if (!window.confirm(`Erase ${name}'s personal data for good?`)) return;
          await act("Erase", "DELETE", `${base}/registrations/${r.id}`);
          loadRegistrants();
        }}}, "Erase"));
    }
    return relay.el("tr", {"data-registration": r.id, "data-status": r.status},
      relay.el("td", {}, name), relay.el("td", {}, r.erased ? "" : f.email || ""),
      relay.el("td", {}, r.status), relay.el("td", {}, r.joined ? "yes" : "no"),
      relay.el("td", {class: "actions"}, ...buttons));
  });
  document.querySelector("#registrants tbody").replaceChildren(...rows);
}

function correct(r) {
  const row = document.querySelector(`tr[data-registration="${CSS.escape(r.id)}"]`);
  const f = r.fields || {};
  const input = (name, label, value) => relay.el("label", {}, label,
    relay.el("input", {name, value: value || "", required: true}));
  const form = relay.el("form", {class: "row"},
    input("first_name", "First name", f.first_name), input("last_name", "Last name", f.last_name),
    input("email", "Email", f.email), relay.el("button", {type: "submit"}, "Save"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = Object.fromEntries(new FormData(form).entries());
    await act("Correct", "PATCH", `${base}/registrations/${r.id}`, {fields});
    loadRegistrants();
  });
  row.replaceChildren(relay.el("td", {colspan: 5}, form));
}

document.getElementById("reg-refresh").addEventListener("click", loadRegistrants);
document.getElementById("reg-export").addEventListener("click", () =>
  relay.download(`${base}/registrations?format=csv`, key, "registrations.csv")
    .catch((error) => regNotice(relay.explain(error), "error")));

// -- the audit log --

function refreshAudit() {
  // Read again after a change, at most once a second (the stream's changes come in bursts).
  const now = Date.now();
  if (now < auditDue) return;
  auditDue = now + 1000;
  setTimeout(loadAudit, 300);
}

async function loadAudit() {
  if (!key) return;
  let entries;
  try {
    entries = await relay.call("GET", `${base}/audit?limit=100`, {token: key});
  } catch (_) {
    return;
  }
  document.querySelector("#audit tbody").replaceChildren(...entries.map((e) =>
    relay.el("tr", {}, relay.el("td", {}, relay.time(e.at)), relay.el("td", {}, e.actor),
      relay.el("td", {}, e.action), relay.el("td", {}, e.target || ""))));
}

if (key) open();
